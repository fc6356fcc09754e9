"""Start runs of the in-memory LangGraph runtime when they are created, not at the next half-second poll.

langgraph-runtime-inmem's scheduler (`langgraph_runtime_inmem.queue.queue`) asks `ops.Runs.next(wait=...)` for
pending runs; when the previous ask found nothing, `next` first sleeps 0.5 s, and it takes `now` *before* that
sleep and only hands out runs created before `now` — so a run created during the sleep waits for the next round
too. A new run therefore waited 0.5-1.0 s before a worker took it (p50 0.7 s measured by
benchmarks/api_overhead.py: most of the API's overhead). There is no setting for the interval (it is a literal
in ops.py; N_JOBS_PER_WORKER, BG_JOB_* and the checkpoint settings do not touch it).

install() keeps the runtime's own logic and only replaces the sleep: `next` waits on an event, at most the same
0.5 s, and the event is set when a run is created (Runs.put) and when a run ends (Runs.enter exits: a run queued
behind it on the same thread, or waiting for a free worker, can start). Then the runtime's `next` runs with
wait=False, i.e. with a fresh `now`. The Postgres/Redis runtime is not patched (it has its own wake-ups).
It is a patch of a private interface, checked at install (anything missing: logged, left alone);
ATELIER_API_WAKE_QUEUE=0 turns it off.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

log = logging.getLogger("atelier.api")

POLL_SECONDS = 0.5  # the runtime's own interval: the fallback when nothing wakes the scheduler
_installed = False
_lock = threading.Lock()
_event: asyncio.Event | None = None
_event_loop: asyncio.AbstractEventLoop | None = None
stats = {"wakes": 0, "woken_polls": 0, "timed_out_polls": 0}


def wake() -> None:
    """Wake the scheduler (thread-safe: runs end in their own event loop when BG_JOB_ISOLATED_LOOPS is on)."""
    with _lock:
        event, loop = _event, _event_loop
    if event is None or loop is None or loop.is_closed():
        return
    stats["wakes"] += 1
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
    else:
        loop.call_soon_threadsafe(event.set)


def _scheduler_event() -> asyncio.Event:
    global _event, _event_loop
    loop = asyncio.get_running_loop()
    with _lock:
        if _event is None or _event_loop is not loop:
            _event, _event_loop = asyncio.Event(), loop
        return _event


def install() -> bool:
    """Patch langgraph_runtime_inmem.ops.Runs (once per process). Returns whether it is in place."""
    global _installed
    if _installed:
        return True
    from agent.settings import get_settings

    if not get_settings().api_wake_queue:
        log.info("step=api_wake_queue status=off")
        return False
    try:
        from langgraph_runtime_inmem import ops
    except ImportError as exc:
        log.warning("step=api_wake_queue status=unavailable reason=%s", exc)
        return False
    runs = getattr(ops, "Runs", None)
    original_next, original_put, original_enter = (getattr(runs, name, None) for name in ("next", "put", "enter"))
    if runs is None or None in (original_next, original_put, original_enter):
        log.warning("step=api_wake_queue status=unavailable reason=langgraph_runtime_inmem.ops.Runs changed")
        return False

    async def next_run(wait: bool, limit: int = 1):
        woken = False
        if wait:
            event = _scheduler_event()
            try:
                await asyncio.wait_for(event.wait(), POLL_SECONDS)
                woken = True
                stats["woken_polls"] += 1
            except asyncio.TimeoutError:
                stats["timed_out_polls"] += 1
            event.clear()
        found = False
        async for item in original_next(wait=False, limit=limit):
            found = True
            yield item
        if woken and not found:
            # Woken in the same microsecond the run was stamped (next() takes runs created strictly before now).
            await asyncio.sleep(0.002)
            async for item in original_next(wait=False, limit=limit):
                yield item

    async def put(*args, **kwargs):
        result = await original_put(*args, **kwargs)
        wake()
        return result

    @contextlib.asynccontextmanager
    async def enter(*args, **kwargs):
        try:
            async with original_enter(*args, **kwargs) as done:
                yield done
        finally:
            wake()

    runs.next = staticmethod(next_run)
    runs.put = staticmethod(put)
    runs.enter = staticmethod(enter)
    _installed = True
    log.info("step=api_wake_queue status=installed poll_fallback_seconds=%s", POLL_SECONDS)
    return True
