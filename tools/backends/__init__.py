"""Backend registry and the ordered fallback runner.

Each module in this package that defines a module-level `BACKEND` class (with `name` and `kind`) is a
backend; adding one means adding one file. Backends are imported lazily, so a broken optional backend
does not stop the others.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .base import BackendError, GeneratedAsset, ProgressFn, no_progress

log = logging.getLogger("atelier.backends")


@lru_cache(maxsize=1)
def available_backends() -> dict[str, str]:
    """name -> module path, for every module that defines BACKEND (read without instantiating)."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        found[info.name] = f"{__name__}.{info.name}"
    return found


def load_backend(name: str, kind: str):
    modules = available_backends()
    if name not in modules:
        raise BackendError(f"unknown backend '{name}' (known: {', '.join(sorted(modules))})", transient=False, backend=name)
    module = importlib.import_module(modules[name])
    backend_cls = getattr(module, "BACKEND", None)
    if backend_cls is None:
        raise BackendError(f"module {modules[name]} defines no BACKEND", transient=False, backend=name)
    if kind not in getattr(backend_cls, "kinds", (backend_cls.kind,)):
        raise BackendError(f"backend '{name}' does not make {kind}s", transient=False, backend=name)
    return _instance(backend_cls, kind)


_instances: dict[tuple[type, str], Any] = {}


def _instance(backend_cls, kind: str):
    # One instance per class and kind: backends may hold caches (schemas, circuit breakers, loaded models).
    key = (backend_cls, kind)
    if key not in _instances:
        try:
            _instances[key] = backend_cls(kind=kind)
        except TypeError:
            _instances[key] = backend_cls()
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
