"""Make the in-memory LangGraph runtime save its state when it tells a client something, not only every 10 s.

langgraph-runtime-inmem keeps threads, runs and checkpoints in dicts that it pickles into ./.langgraph_api
from a background thread every 10 seconds (`_persistence._flush_interval`, no setting for it). A kill -9 in
between loses what happened since the last flush: a run that a client saw finish is re-run on restart (or its
thread is gone, 404, while the creation it made stays in SQL). install() wraps the runtime's operations that
create or finish something (a thread, a run, a run's final status, a thread's state) so the dicts are written
before the operation returns, i.e. before the HTTP answer or the run's end reaches the client. Atelier's own
records never depended on this (SQL commits); this makes the runtime's threads and runs follow. Each operation
writes only the files it changes (FLUSHED_OPERATIONS): a flush pickles whole dicts, so its cost grows with the
threads the server holds (docs/durability.md, benchmarks/crash_recovery.py --scale).

It is a patch of a private interface (checked at install: anything missing is logged and left alone), for a
runtime the LangGraph docs call a development server. For production, docs/durability.md recommends a runtime
with a database (LangGraph's Postgres runtime): there every one of these operations is a transaction.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time

log = logging.getLogger("atelier.api")

# (class, method) of langgraph_runtime_inmem.ops whose effects a client is told about when they return, and what
# each must write: "ops" = the threads/runs/assistants dict and the retry counters (what these methods change,
# read from ops.py 0.36: they touch conn.store only), "all" = those and the checkpoints. A run's checkpoints are
# written by the graph while it runs; set_joint_status (its final status, before the client hears of the end) is
# where they must be on disk. Threads.copy copies checkpoints; Threads.delete is "all" to drop a thread's
# checkpoints from the files with it. The checkpoints are most of the state (benchmarks/crash_recovery.py
# --scale), so a run pays for them once instead of three times.
FLUSHED_OPERATIONS = {
    ("Threads", "put"): "ops", ("Threads", "patch"): "ops", ("Threads", "delete"): "all", ("Threads", "copy"): "all",
    ("Threads", "set_joint_status"): "all",
    ("Runs", "put"): "ops", ("Runs", "delete"): "ops", ("Runs", "cancel"): "ops",
}
OPS_FILES = (".langgraph_ops.pckl", ".langgraph_retry_counter.pckl")  # langgraph_runtime_inmem.database's names
# PersistentDict.sync writes <file>.tmp then renames it: the runtime's flush thread and a flush here must not
# write the same temp file at once.
_sync_lock = threading.RLock()
_installed = False
stats = {"flushes": 0, "seconds": 0.0}


def flush_all(which: str = "all") -> None:
    """Write the dicts the runtime persists now: "all" (threads, runs, checkpoints, store) or "ops" (threads,
    runs, assistants and retry counters, without the checkpoints)."""
    from langgraph_runtime_inmem import _persistence

    if which not in ("all", "ops"):
        raise ValueError(f"flush what? {which!r} (all | ops)")
    started = time.perf_counter()
    failed = []
    for ref in list(_persistence._stores.values()):
        store = ref()
        if store is None or (which == "ops" and os.path.basename(getattr(store, "filename", "")) not in OPS_FILES):
            continue
        try:
            store.sync()
        except Exception as exc:  # one dict failing (e.g. a full disk) must not keep the others from being written
            failed.append(f"{getattr(store, 'filename', '?')}: {exc}")
    stats["flushes"] += 1
    stats[f"{which}_flushes"] = stats.get(f"{which}_flushes", 0) + 1
    stats["seconds"] += time.perf_counter() - started
    if failed:
        raise OSError("; ".join(failed))


def _flushing(method, which: str = "all"):
    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        result = await method(*args, **kwargs)
        try:
            flush_all(which)  # in the event loop, like the runtime's own mutations: the dicts are not changing meanwhile
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
        from langgraph_runtime_inmem import _persistence, database, ops
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
    ops_files = {os.path.basename(database.OPS_FILENAME), os.path.basename(database.RETRY_COUNTER_FILENAME)}
    if ops_files != set(OPS_FILES):  # the runtime renamed its files: an "ops" flush would miss them, write all
        log.warning("step=api_durability status=ops_files_changed files=%s", ",".join(sorted(ops_files)))
    for (class_name, name), which in FLUSHED_OPERATIONS.items():
        cls = getattr(ops, class_name, None)
        method = getattr(cls, name, None) if cls is not None else None
        if method is None or getattr(method, "__atelier_flushing__", False):
            continue
        setattr(cls, name, staticmethod(_flushing(method, which if ops_files == set(OPS_FILES) else "all")))
        patched.append(f"{class_name}.{name}")
    _installed = True
    log.info("step=api_durability status=installed operations=%s", ",".join(patched))
    return True
