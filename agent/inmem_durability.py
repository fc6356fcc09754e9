"""Make the in-memory LangGraph runtime save its state when it tells a client something, not only every 10 s.

langgraph-runtime-inmem keeps threads, runs and checkpoints in dicts that it pickles into ./.langgraph_api
from a background thread every 10 seconds (`_persistence._flush_interval`, no setting for it). A kill -9 in
between loses what happened since the last flush: a run that a client saw finish is re-run on restart (or its
thread is gone, 404, while the creation it made stays in SQL). install() wraps the runtime's operations that
create or finish something (a thread, a run, a run's final status, a thread's state) so the dicts are written
before the operation returns, i.e. before the HTTP answer or the run's end reaches the client. Atelier's own
records never depended on this (SQL commits); this makes the runtime's threads and runs follow.

It is a patch of a private interface (checked at install: anything missing is logged and left alone), for a
runtime the LangGraph docs call a development server. For production, docs/durability.md recommends a runtime
with a database (LangGraph's Postgres runtime): there every one of these operations is a transaction.
"""
from __future__ import annotations

import functools
import logging
import threading
import time

log = logging.getLogger("atelier.api")

# (class, method) of langgraph_runtime_inmem.ops whose effects a client is told about when they return.
FLUSHED_OPERATIONS = (
    ("Threads", "put"), ("Threads", "patch"), ("Threads", "delete"), ("Threads", "copy"),
    ("Threads", "set_joint_status"),
    ("Runs", "put"), ("Runs", "delete"), ("Runs", "cancel"),
)
# PersistentDict.sync writes <file>.tmp then renames it: the runtime's flush thread and a flush here must not
# write the same temp file at once.
_sync_lock = threading.RLock()
_installed = False
stats = {"flushes": 0, "seconds": 0.0}


def flush_all() -> None:
    """Write every dict the runtime persists (threads, runs, checkpoints, store) now."""
    from langgraph_runtime_inmem import _persistence

    started = time.perf_counter()
    failed = []
    for ref in list(_persistence._stores.values()):
        store = ref()
        if store is None:
            continue
        try:
            store.sync()
        except Exception as exc:  # one dict failing (e.g. a full disk) must not keep the others from being written
            failed.append(f"{getattr(store, 'filename', '?')}: {exc}")
    stats["flushes"] += 1
    stats["seconds"] += time.perf_counter() - started
    if failed:
        raise OSError("; ".join(failed))


def _flushing(method):
    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        result = await method(*args, **kwargs)
        try:
            flush_all()  # in the event loop, like the runtime's own mutations: the dicts are not changing meanwhile
        except Exception as exc:  # the 10 s flush still runs; the operation itself succeeded
            log.warning("step=api_flush status=failed reason=%s", exc)
        return result
    wrapper.__atelier_flushing__ = True
    return wrapper


def install() -> bool:
    """Patch the runtime (once per process). Returns whether it is in place."""
    global _installed
    if _installed:
        return True
    try:
        from langgraph.checkpoint.memory import PersistentDict
        from langgraph_runtime_inmem import _persistence, ops
    except ImportError as exc:
        log.warning("step=api_durability status=unavailable reason=%s", exc)
        return False
    if not hasattr(_persistence, "_stores") or not hasattr(PersistentDict, "sync"):
        log.warning("step=api_durability status=unavailable reason=langgraph_runtime_inmem changed its persistence")
        return False
    sync = PersistentDict.sync

    def locked_sync(self):
        with _sync_lock:
            return sync(self)

    PersistentDict.sync = locked_sync
    patched = []
    for class_name, name in FLUSHED_OPERATIONS:
        cls = getattr(ops, class_name, None)
        method = getattr(cls, name, None) if cls is not None else None
        if method is None or getattr(method, "__atelier_flushing__", False):
            continue
        setattr(cls, name, staticmethod(_flushing(method)))
        patched.append(f"{class_name}.{name}")
    _installed = True
    log.info("step=api_durability status=installed operations=%s", ",".join(patched))
    return True
