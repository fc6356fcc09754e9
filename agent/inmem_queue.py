"""The in-memory LangGraph runtime's run queue: fair across users, capped, and started when a run is created.

Fairness. The runtime's `Runs.next(limit=n)` looks only at the n oldest pending runs and skips a run whose
thread is busy, so one user's pile of runs queued on one thread (multitask_strategy="enqueue") hid every other
user's run behind it: measured 15 s for another user's 0.5 s run behind 40 queued, not started after 120 s behind
2,000 (issue 21). install() replaces `next` with fair_pick(): among the pending runs whose thread is free (the
oldest of each thread, so a thread still runs its runs in order), it serves users round-robin — the user served
longest ago first — and each user's oldest first. benchmarks/api_fairness.py measures it.

Caps. A user may have at most ATELIER_API_MAX_PENDING_RUNS_PER_USER runs waiting, a thread at most
ATELIER_API_MAX_PENDING_RUNS_PER_THREAD; one more is refused with 429 before it is stored (admit(), called by
the run-create auth handler in agent/api/auth.py).

Start at once. langgraph-runtime-inmem's scheduler (`langgraph_runtime_inmem.queue.queue`) asks `ops.Runs.next(wait=...)` for
pending runs; when the previous ask found nothing, `next` first sleeps 0.5 s, and it takes `now` *before* that
sleep and only hands out runs created before `now` — so a run created during the sleep waits for the next round
too. A new run therefore waited 0.5-1.0 s before a worker took it (p50 0.7 s measured by
benchmarks/api_overhead.py: most of the API's overhead). There is no setting for the interval (it is a literal
in ops.py; N_JOBS_PER_WORKER, BG_JOB_* and the checkpoint settings do not touch it).

install() replaces that sleep: `next` waits on an event, at most the same 0.5 s, and the event is set when a run
is created (Runs.put) and when a run ends (Runs.enter exits: a run queued behind it on the same thread, or
waiting for a free worker, can start); then it picks with a fresh `now`. ATELIER_API_WAKE_QUEUE=0 turns the
wake-up off (the runtime's 0.5 s sleep), not the fairness.

It is a patch of a private interface (ops.Runs.next / put / enter, ops.RUN_LOCK, database.GLOBAL_STORE, read
from langgraph-runtime-inmem 0.36), checked at install: anything missing is logged and left alone. The
Postgres/Redis runtime is not patched (it has its own queue).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("atelier.api")

POLL_SECONDS = 0.5  # the runtime's own interval: the fallback when nothing wakes the scheduler
_installed = False
_lock = threading.Lock()
_event: asyncio.Event | None = None
_event_loop: asyncio.AbstractEventLoop | None = None
stats = {"wakes": 0, "woken_polls": 0, "timed_out_polls": 0, "picked": 0}
_served = itertools.count(1)
_last_served: dict[str, int] = {}  # user -> when (a serial number) the scheduler last started one of their runs


class QueueFull(Exception):
    """A user or a thread has as many runs waiting as the settings allow (the API answers 429)."""


def run_user(run: dict) -> str:
    """Whose run: the user_id the run-create auth handler stamped (metadata, or the run's configurable)."""
    user = (run.get("metadata") or {}).get("user_id")
    if not user:
        user = (((run.get("kwargs") or {}).get("config") or {}).get("configurable") or {}).get("user_id")
    return str(user or "")


def fair_pick(runs: list[dict], limit: int, now: datetime) -> list[dict]:
    """Up to `limit` pending runs to start: only on threads with no running run, the oldest of each thread, users
    round-robin (the one served longest ago first, a user never served before anyone), each user's oldest first.
    O(runs): the scheduler calls it whenever a run is created or ends."""
    busy = {r["thread_id"] for r in runs if r["status"] == "running"}
    oldest_per_thread: dict[Any, dict] = {}
    for run in runs:
        if run["status"] != "pending" or not run.get("created_at", now) < now or run["thread_id"] in busy:
            continue
        held = oldest_per_thread.get(run["thread_id"])
        if held is None or run.get("created_at", datetime.min) < held.get("created_at", datetime.min):
            oldest_per_thread[run["thread_id"]] = run
    per_user: dict[str, list[dict]] = {}
    for run in sorted(oldest_per_thread.values(), key=lambda r: r.get("created_at", datetime.min)):
        per_user.setdefault(run_user(run), []).append(run)
    order = sorted(per_user, key=lambda u: (_last_served.get(u, 0), per_user[u][0].get("created_at", datetime.min)))
    picked: list[dict] = []
    while len(picked) < limit and any(per_user[u] for u in order):
        for user in order:
            if per_user[user] and len(picked) < limit:
                picked.append(per_user[user].pop(0))
    return picked


def admit(user: str, thread_id: Any) -> None:
    """Refuse (QueueFull) a new run when its user or its thread already has the most runs waiting that the
    settings allow. Reads the runtime's run list; a no-op when the patch is not installed (another runtime)."""
    if not _installed:
        return
    from langgraph_runtime_inmem.database import GLOBAL_STORE

    from agent.settings import get_settings

    settings = get_settings()
    per_user = per_thread = 0
    thread = str(thread_id) if thread_id else None
    for run in GLOBAL_STORE.get("runs") or []:
        if run["status"] != "pending":
            continue
        per_user += run_user(run) == user
        per_thread += thread is not None and str(run["thread_id"]) == thread
    if thread is not None and per_thread >= settings.api_max_pending_runs_per_thread:
        raise QueueFull(f"this thread already has {per_thread} runs waiting; the limit is "
                        f"{settings.api_max_pending_runs_per_thread} (ATELIER_API_MAX_PENDING_RUNS_PER_THREAD): "
                        "wait for them, or cancel some")
    if per_user >= settings.api_max_pending_runs_per_user:
        raise QueueFull(f"you already have {per_user} runs waiting; the limit is {settings.api_max_pending_runs_per_user} "
                        "(ATELIER_API_MAX_PENDING_RUNS_PER_USER): wait for them, or cancel some")


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
    try:
        from langgraph_runtime_inmem import ops
        from langgraph_runtime_inmem.database import GLOBAL_STORE, connect  # noqa: F401 - admit() reads GLOBAL_STORE
    except ImportError as exc:
        log.warning("step=api_queue status=unavailable reason=%s", exc)
        return False
    runs = getattr(ops, "Runs", None)
    original_put, original_enter = (getattr(runs, name, None) for name in ("put", "enter"))
    if runs is None or None in (original_put, original_enter, getattr(runs, "next", None), getattr(ops, "RUN_LOCK", None)):
        log.warning("step=api_queue status=unavailable reason=langgraph_runtime_inmem.ops.Runs changed")
        return False
    from agent.settings import get_settings

    wake_queue = get_settings().api_wake_queue

    async def next_run(wait: bool, limit: int = 1):
        """The runtime's Runs.next, with fair_pick() choosing; the wait is the event (or the runtime's own 0.5 s
        sleep with ATELIER_API_WAKE_QUEUE=0)."""
        woken = False
        if wait and wake_queue:
            event = _scheduler_event()
            try:
                await asyncio.wait_for(event.wait(), POLL_SECONDS)
                woken = True
                stats["woken_polls"] += 1
            except TimeoutError:
                stats["timed_out_polls"] += 1
            event.clear()
        elif wait:
            await asyncio.sleep(POLL_SECONDS)
        found = False
        async for item in _pick(limit):
            found = True
            yield item
        if woken and not found:
            # Woken in the same microsecond the run was stamped (only runs created strictly before now are taken).
            await asyncio.sleep(0.002)
            async for item in _pick(limit):
                yield item

    async def _pick(limit: int):
        await asyncio.sleep(0)
        now = datetime.now(UTC)
        async with connect() as conn, ops.RUN_LOCK:
            threads = {t["thread_id"] for t in conn.store["threads"]}
            for run in fair_pick(conn.store["runs"], limit, now):
                if run["thread_id"] not in threads:
                    log.warning("step=api_queue status=skipped reason=missing_thread thread=%s", run["thread_id"])
                    continue
                attempt = await conn.retry_counter.increment(run["run_id"])
                run["status"] = "running"
                user = run_user(run)
                _last_served[user] = next(_served)
                stats["picked"] += 1
                yield run, attempt

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
    if wake_queue:
        runs.put = staticmethod(put)
        runs.enter = staticmethod(enter)
    _installed = True
    log.info("step=api_queue status=installed fair=1 wake=%d poll_fallback_seconds=%s", wake_queue, POLL_SECONDS)
    return True
