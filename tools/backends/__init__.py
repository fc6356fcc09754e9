"""Backend registry and the ordered fallback runner — backends as plugins, in the style of simonw/llm.

A backend is a class whose attributes say what it is and can do (tools/backends/base.py `Backend`: name, kind(s),
label, supports_size / seed / steps / negative_prompt, needs_gpu, learned). Two ways in, one `register` function:

  * built-ins: each module in this package defines `register_backends(register)` and calls `register(TheClass)`.
    They are found by listing this folder, so a checkout always runs its own built-ins, whichever checkout the
    shared venv's editable install last pointed at (entry points declared in pyproject.toml live in that install's
    dist-info, and would go stale).
  * outside packages: an entry point in the `atelier.backends` group whose object is a backend class (or a module
    with its own `register_backends`):  [project.entry-points."atelier.backends"] mine = "my_pkg.backend:MyBackend"

Discovery imports the backend modules but nothing heavy (torch, diffusers, hy3dgen are imported inside methods)
and makes no instance. A module that fails to import is kept as "broken" with its reason, so one missing optional
dependency does not stop the others; an unknown name is an UnknownBackendError that lists the known ones.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib.metadata import entry_points
from typing import Any

from .base import Backend, BackendError, GeneratedAsset, ProgressFn, no_progress

log = logging.getLogger("atelier.backends")

ENTRY_POINT_GROUP = "atelier.backends"
HELPER_MODULES = {"base", "surface", "simplify", "marching_cubes"}  # parts of backends, not backends
KINDS = ("image", "model")
CAPABILITIES = ("supports_size", "supports_seed", "supports_steps", "supports_negative_prompt", "needs_gpu",
                "prefers_gpu", "learned")


class UnknownBackendError(BackendError, KeyError):
    """No backend of that name is registered (the message lists the ones that are)."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown backend '{name}' (known: {', '.join(known) or 'none'})", transient=False, backend=name)
        self.name, self.known = name, known

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend class and what it declares (read from the class; the defaults are base.Backend's)."""

    name: str
    cls: type
    kinds: tuple[str, ...]
    source: str  # "built-in: tools.backends.sketch" | "entry point: mine = my_pkg.backend:MyBackend"

    def attr(self, attribute: str) -> Any:
        return getattr(self.cls, attribute, getattr(Backend, attribute))

    def supports(self, capability: str) -> bool:
        """supports("size") / supports("supports_size") / supports("needs_gpu")."""
        key = capability if capability in CAPABILITIES else f"supports_{capability}"
        if key not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r} (known: {', '.join(CAPABILITIES)})")
        return bool(self.attr(key))

    def label(self, kind: str | None = None) -> str:
        labels = self.attr("labels") or {}
        return (labels.get(kind) if kind else None) or self.attr("label") or f"the {self.name} backend"


@dataclass(frozen=True)
class BrokenBackend:
    name: str
    source: str
    reason: str


@dataclass
class Registry:
    backends: dict[str, BackendInfo]
    broken: dict[str, BrokenBackend]

    def known(self) -> list[str]:
        return sorted(set(self.backends) | set(self.broken))


def _kinds_of(backend_cls: type) -> tuple[str, ...]:
    kinds = tuple(getattr(backend_cls, "kinds", ()) or ())
    if not kinds:
        kind = getattr(backend_cls, "kind", None)
        kinds = (kind,) if isinstance(kind, str) else ()
    return kinds


def _collect(found: dict[str, BackendInfo], source: str):
    def register(backend_cls: type) -> None:
        name = getattr(backend_cls, "name", None)
        kinds = _kinds_of(backend_cls) if isinstance(backend_cls, type) else ()
        if not isinstance(backend_cls, type) or not isinstance(name, str) or not name:
            raise TypeError(f"{source}: a backend is a class with a `name` string attribute, not {backend_cls!r}")
        if not kinds or any(k not in KINDS for k in kinds):
            raise TypeError(f"{source}: backend '{name}' declares kinds {kinds!r}; each must be one of {', '.join(KINDS)}")
        if not callable(getattr(backend_cls, "generate", None)):
            raise TypeError(f"{source}: backend '{name}' has no generate(request, progress) method")
        if name in found and found[name].cls is not backend_cls:
            # The first one wins (built-ins are registered first): a plugin cannot silently replace `sketch`.
            log.warning("step=register_backend status=duplicate name=%s kept=%s ignored=%s", name, found[name].source, source)
            return
        found[name] = BackendInfo(name, backend_cls, kinds, source)

    return register


@dataclass(frozen=True)
class _Source:
    key: str  # the module's or entry point's name: usually the backend's name too
    description: str
    load: Callable[[], Any]
    entry_point: bool


@lru_cache(maxsize=1)
def _sources() -> dict[str, _Source]:
    """Where backends come from, listed without importing anything: this package's modules, then the entry points
    (a plugin cannot take a built-in's name)."""
    found: dict[str, _Source] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in HELPER_MODULES:
            module_name = f"{__name__}.{info.name}"
            found[info.name] = _Source(info.name, f"built-in: {module_name}", partial(importlib.import_module, module_name), False)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in found:
            log.warning("step=register_backend status=duplicate name=%s ignored=%s", entry_point.name, entry_point.value)
            continue
        found[entry_point.name] = _Source(entry_point.name, f"entry point: {entry_point.name} = {entry_point.value}", entry_point.load, True)
    return found


_registry = Registry({}, {})
_loaded_sources: set[str] = set()
_lock = threading.RLock()


def _load(source: _Source) -> None:
    """Import one source and let it register its backends (once). Only the backend asked for is imported: making
    a sketch never imports the Openfabric client or scipy."""
    with _lock:
        if source.key in _loaded_sources:
            return
        _loaded_sources.add(source.key)
        started = time.perf_counter()
        try:
            loaded = source.load()
            if inspect.ismodule(loaded):
                hook = getattr(loaded, "register_backends", None)
                if hook is None and source.entry_point:
                    raise TypeError("the module defines no register_backends(register)")
                if hook is not None:
                    hook(_collect(_registry.backends, source.description))
            else:
                _collect(_registry.backends, source.description)(loaded)
        except Exception as exc:  # e.g. an optional dependency missing: the other backends still work
            _registry.broken.setdefault(source.key, BrokenBackend(source.key, source.description, f"{source.description} failed to load: {exc}"))
            log.warning("step=register_backend status=broken source=%s reason=%s", source.description, exc)
            return
        log.info("step=register_backend source=%s seconds=%.3f", source.description, time.perf_counter() - started)


def registry() -> Registry:
    """Every backend, each source imported once: the built-ins in this package, then the `atelier.backends`
    entry points. Call refresh() after installing a plugin in a running process."""
    for source in _sources().values():
        _load(source)
    return _registry


def refresh() -> Registry:
    with _lock:
        _sources.cache_clear()
        _registry.backends.clear()
        _registry.broken.clear()
        _loaded_sources.clear()
        _instances.clear()
    return registry()


def available_backends(kind: str | None = None) -> dict[str, BackendInfo]:
    """name -> BackendInfo for every registered backend (of one kind), read without making an instance."""
    return {n: b for n, b in sorted(registry().backends.items()) if kind is None or kind in b.kinds}


def backend_info(name: str) -> BackendInfo:
    if name not in _registry.backends and (source := _sources().get(name)) is not None:
        _load(source)  # the usual case: the module (or entry point) is named after its backend
    if name not in _registry.backends and name not in _registry.broken:
        registry()  # a source that registers under other names
    if name in _registry.backends:
        return _registry.backends[name]
    if name in _registry.broken:
        raise BackendError(_registry.broken[name].reason, transient=False, backend=name)
    raise UnknownBackendError(name, _registry.known())


def backend_label(name: str, kind: str | None = None) -> str:
    """The studio's name for a backend; a name that is not registered (an old record) gets a generic one."""
    try:
        return backend_info(name).label(kind)
    except BackendError:
        return f"the {name} backend"


def supporting(capability: str, names: list[str] | set[str]) -> list[str]:
    """Those of these backends that declare the capability ("size", "seed", "steps", "negative_prompt", ...);
    unknown or broken ones declare nothing."""
    out = []
    for name in names:
        try:
            if backend_info(name).supports(capability):
                out.append(name)
        except BackendError:
            continue
    return sorted(out)


def load_backend(name: str, kind: str):
    info = backend_info(name)
    if kind not in info.kinds:
        raise BackendError(f"backend '{name}' does not make {kind}s (it makes: {', '.join(info.kinds)})", transient=False, backend=name)
    return _instance(info.cls, kind)


_instances: dict[tuple[type, str], Any] = {}


def _takes_kind(backend_cls: type) -> bool:
    try:
        parameters = inspect.signature(backend_cls).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature (a C type): make it without arguments
        return False
    return any(p.name == "kind" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _instance(backend_cls, kind: str):
    # One instance per class and kind: backends may hold caches (schemas, circuit breakers, loaded models). The
    # constructor is called once, with kind= only if it takes one: a TypeError it raises is its own bug, and
    # reaches the caller (the fallback records it with its message) instead of being retried away.
    key = (backend_cls, kind)
    if key not in _instances:
        _instances[key] = backend_cls(kind=kind) if _takes_kind(backend_cls) else backend_cls()
    return _instances[key]


@dataclass
class Attempt:
    backend: str
    ok: bool
    seconds: float
    reason: str = ""


def generate_with_fallback(kind: str, names: list[str], request, progress: ProgressFn = no_progress) -> tuple[list[GeneratedAsset], list[Attempt]]:
    """Try each backend in order; return the first success and every attempt with its reason."""
    attempts: list[Attempt] = []
    for name in names:
        started = time.perf_counter()
        try:
            backend = load_backend(name, kind)
            assets = backend.generate(request, progress)
            if not assets:
                raise BackendError(f"backend '{name}' returned no {kind}", backend=name)
            attempts.append(Attempt(name, True, time.perf_counter() - started))
            return assets, attempts
        except Exception as exc:  # any backend failure moves on to the next one, with the reason kept
            reason = str(exc) or exc.__class__.__name__
            attempts.append(Attempt(name, False, time.perf_counter() - started, reason))
            log.warning("backend failed kind=%s backend=%s seconds=%.2f reason=%s", kind, name, attempts[-1].seconds, reason)
            progress(None, f"{name} failed: {reason} — trying the next backend")
    tried = "; ".join(f"{a.backend}: {a.reason}" for a in attempts) or "no backends configured"
    raise BackendError(f"every {kind} backend failed ({tried})", transient=False)


# ---------------------------------------------------------------------------------------------- warm-up

@dataclass
class WarmUp:
    backend: str
    kind: str
    state: str = "waiting"  # waiting | loading | ready | skipped | failed
    detail: str = ""
    seconds: float = 0.0
    thread: threading.Thread | None = None


_warm_ups: dict[tuple[str, str], WarmUp] = {}


def _warm_one(entry: WarmUp) -> None:
    started = time.perf_counter()
    entry.state = "loading"
    try:
        detail = load_backend(entry.backend, entry.kind).warm_up()
        entry.state, entry.detail = ("skipped", detail) if detail == "no model" else ("ready", detail)
    except Exception as exc:  # the creation will meet (and report) the same failure; the process keeps running
        entry.state, entry.detail = "failed", f"{type(exc).__name__}: {exc}"
    entry.seconds = time.perf_counter() - started
    log.info("step=warm_up backend=%s kind=%s state=%s seconds=%.2f detail=%s", entry.backend, entry.kind, entry.state,
             entry.seconds, entry.detail)


def warm_up() -> dict[str, WarmUp]:
    """Start loading every configured learned backend that has a model on disk, each in its own background thread,
    at the same time. Called by `atelier serve` and the studio at start. Once per process: later calls return the
    same entries. A backend without its model on disk is skipped in milliseconds (directory listings; torch is not
    imported). Off with ATELIER_WARM_UP=false.

    A backend's `prepare_main_thread()` runs first, here, in the caller's thread (call warm_up from the main
    thread): pymeshlab, which hy3dgen imports, corrupts the C heap at exit when first imported in another thread."""
    from tools.settings import get_settings

    settings = get_settings()
    with _lock:
        if not settings.warm_up:
            return {}
        new: list[WarmUp] = []
        for kind, names in (("image", settings.image_backend_list), ("model", settings.model_backend_list)):
            for name in names:
                if (name, kind) in _warm_ups:
                    continue
                try:
                    info = backend_info(name)
                except BackendError:
                    continue
                if kind not in info.kinds or not callable(getattr(info.cls, "warm_up", None)):
                    continue
                new.append(WarmUp(name, kind))
        for entry in new:  # what must happen in the calling (main) thread, e.g. a library that needs it for import
            prepare = getattr(backend_info(entry.backend).cls, "prepare_main_thread", None)
            if callable(prepare):
                prepare()
        for entry in new:
            entry.thread = threading.Thread(target=_warm_one, args=(entry,), name=f"atelier-warm-up-{entry.backend}",
                                            daemon=True)
            _warm_ups[(entry.backend, entry.kind)] = entry
            entry.thread.start()
        return {f"{name}:{kind}": entry for (name, kind), entry in _warm_ups.items()}


def warming_up() -> list[str]:
    """Backends still loading in the background (the studio says 'warming up' while this is not empty)."""
    return [name for (name, _kind), entry in _warm_ups.items() if entry.state in ("waiting", "loading")]
