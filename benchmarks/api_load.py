"""Load on the LangGraph API server: N threads at once, each streaming one creation through langgraph-sdk.

    .venv/bin/python benchmarks/api_load.py                       # starts `atelier serve` on a free port, 50 threads
    .venv/bin/python benchmarks/api_load.py --threads 20 --json   # fewer, one JSON object on stdout
    .venv/bin/python benchmarks/api_load.py --url http://127.0.0.1:2024   # against a running server

Each thread: create a thread, stream a run (stream_mode updates+custom) for a different idea, read the thread
history. Reported:
  latency      client time from submitting the run to the end of its stream
  graph        server time from the run's first checkpoint to its last (history timestamps)
  overhead     latency - graph: queueing, HTTP, streaming, serialisation (what the API adds above the graph)
  first_event  client time to the first streamed event
and creations/s over the wall time. It then checks, through GET /creations, that every thread recorded exactly
one creation (no losses, no duplicates). Without --url the server gets a fresh temporary data dir and the fast
local backends (sketch, relief, router decisions, no enhance), so the figures are the API's, not a generator's.
Loopback only; every request has a timeout and the whole run a deadline.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IDEAS = ["a brass owl automaton", "a glass jellyfish lamp", "a moss-covered stone golem", "a paper lantern festival boat",
         "a clockwork hummingbird", "a ceramic fox teapot", "a neon koi fish", "a copper diving helmet", "a crystal mushroom",
         "a wooden toy airship"]
FAST_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
            "ATELIER_IMAGE_BACKENDS": "sketch", "ATELIER_MODEL_BACKENDS": "relief", "ATELIER_DECISION_POLICY": "router",
            "ATELIER_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """`atelier serve` (via agent.api.server) in a temp data dir, its own process group, stopped on exit."""

    def __init__(self, jobs: int, data_dir: Path | None = None, extra_env: dict[str, str] | None = None):
        self.owns_data = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="atelier-load-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
        env.update(FAST_ENV, ATELIER_DATA_DIR=str(self.data_dir), ATELIER_API_JOBS=str(jobs),
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        env.update(extra_env or {})
        self.log = open(self.data_dir / "api.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.api.server", "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir, start_new_session=True)

    async def wait(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(self.data_dir / 'api.log').read_text()[-3000:]}")
                try:
                    if (await client.get(self.url + "/ok")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        if self.owns_data and not os.environ.get("ATELIER_LOAD_KEEP"):  # ATELIER_LOAD_KEEP=1 keeps it (and api.log)
            import shutil

            shutil.rmtree(self.data_dir, ignore_errors=True)


async def one_thread(client, i: int, users: int, enhance: bool, timeout: float) -> dict:
    user = f"load-{i % users}" if i >= 0 else "load-warmup"
    idea = f"{IDEAS[i % len(IDEAS)]} number {i}"
    out: dict = {"i": i, "user": user, "ok": False, "error": None, "creation_ids": [], "events": 0}
    try:
        thread = await client.threads.create(metadata={"user_id": user, "bench": "api_load"})
        out["thread_id"] = thread["thread_id"]
        started = time.perf_counter()
        first = None

        async def consume():
            nonlocal first
            async for part in client.runs.stream(thread["thread_id"], "atelier",
                                                 input={"messages": [{"role": "user", "content": idea}]},
                                                 config={"configurable": {"user_id": user, "enhance": enhance}},
                                                 stream_mode=["updates", "custom"]):
                if first is None and part.event in ("updates", "custom"):
                    first = time.perf_counter() - started
                out["events"] += 1
                if part.event == "error":
                    raise RuntimeError(f"run error: {part.data}")
                if part.event == "custom" and isinstance(part.data, dict) and part.data.get("event") == "step_end" and part.data.get("creation_id"):
                    if part.data["creation_id"] not in out["creation_ids"]:
                        out["creation_ids"].append(part.data["creation_id"])

        await asyncio.wait_for(consume(), timeout)
        out["latency"] = time.perf_counter() - started
        out["first_event"] = first
        history = await client.threads.get_history(thread["thread_id"], limit=200)
        stamps = [datetime.fromisoformat(h["created_at"]) for h in history if h.get("created_at")]
        out["graph"] = (max(stamps) - min(stamps)).total_seconds() if len(stamps) > 1 else None
        out["ok"] = len(out["creation_ids"]) == 1
        if not out["ok"]:
            out["error"] = f"expected one creation, saw {out['creation_ids']}"
    except Exception as exc:  # counted and reported, never raised: one failure must not hide the others
        out["error"] = f"{exc.__class__.__name__}: {exc}"
    return out


async def verify_records(client, results: list[dict], users: int) -> dict:
    """Every thread has exactly one creation in the store, and no creation exists twice."""
    per_thread: dict[str, int] = {}
    ids: list[str] = []
    for u in range(users):
        offset = 0
        while True:
            response = await client.http.client.get("/creations", params={"user_id": f"load-{u}", "limit": 100, "offset": offset})
            response.raise_for_status()
            rows = response.json()["creations"]
            for row in rows:
                ids.append(row["id"])
                per_thread[row["thread_id"]] = per_thread.get(row["thread_id"], 0) + 1
            if len(rows) < 100:
                break
            offset += 100
    threads = [r["thread_id"] for r in results if r.get("thread_id")]
    return {"records": len(ids), "distinct": len(set(ids)), "threads_with_exactly_one": sum(per_thread.get(t, 0) == 1 for t in threads),
            "threads_missing": sum(per_thread.get(t, 0) == 0 for t in threads), "threads_duplicated": sum(per_thread.get(t, 0) > 1 for t in threads)}


async def run(threads: int = 50, concurrency: int | None = None, url: str | None = None, jobs: int = 8, users: int = 5,
              enhance: bool = False, deadline: float = 900, timeout: float = 600) -> dict:
    from langgraph_sdk import get_client

    server = None
    if url is None:
        server = LocalServer(jobs)
        await server.wait()
        url = server.url
    try:
        client = get_client(url=url, timeout=timeout)
        # Warm up: the first run loads the embedder and the router; that is start-up, not load.
        warm = await one_thread(client, -1, 1, enhance, timeout)
        if warm["error"]:
            raise RuntimeError(f"warm-up run failed: {warm['error']}")
        limit = asyncio.Semaphore(concurrency or threads)

        async def bounded(i):
            async with limit:
                return await one_thread(client, i, users, enhance, timeout)

        started = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*(bounded(i) for i in range(threads))), deadline)
        wall = time.perf_counter() - started
        records = await verify_records(client, results, users)
        ok = [r for r in results if r["ok"]]
        lat = [r["latency"] for r in ok]
        graph = [r["graph"] for r in ok if r.get("graph") is not None]
        overhead = [r["latency"] - r["graph"] for r in ok if r.get("graph") is not None]
        first = [r["first_event"] for r in ok if r.get("first_event") is not None]
        return {
            "threads": threads, "concurrency": concurrency or threads, "server_jobs": jobs if server else None,
            "enhance": enhance, "errors": [r["error"] for r in results if r["error"]], "ok": len(ok),
            "wall_seconds": round(wall, 3), "creations_per_second": round(len(ok) / wall, 3) if wall else None,
            "latency": {"p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95), "max": percentile(lat, 1.0)},
            "graph": {"p50": percentile(graph, 0.5), "p95": percentile(graph, 0.95)},
            "overhead": {"p50": percentile(overhead, 0.5), "p95": percentile(overhead, 0.95)},
            "first_event": {"p50": percentile(first, 0.5), "p95": percentile(first, 0.95)},
            "events_per_run": statistics.mean(r["events"] for r in ok) if ok else 0,
            "records": records, "cpus": os.cpu_count(), "url": url if server is None else "local",
        }
    finally:
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--concurrency", type=int, help="threads in flight at once (default: all)")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--jobs", type=int, default=8, help="runs the started server executes at once")
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--enhance", action="store_true", help="include enhance_prompt (LLM) in every run")
    parser.add_argument("--deadline", type=float, default=900, help="seconds for the whole load")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.threads, args.concurrency, args.url, args.jobs, args.users, args.enhance, args.deadline))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['ok']}/{report['threads']} threads ok in {report['wall_seconds']}s "
              f"({report['creations_per_second']} creations/s, {report['cpus']} CPUs, {report['server_jobs']} server jobs)")
        for key in ("latency", "graph", "overhead", "first_event"):
            print(f"  {key:<12} p50 {report[key]['p50']}s  p95 {report[key]['p95']}s")
        print(f"  records      {report['records']}")
        for error in report["errors"][:10]:
            print(f"  error: {error}")
    return 0 if not report["errors"] and report["records"]["threads_with_exactly_one"] == report["threads"] else 1


if __name__ == "__main__":
    sys.exit(main())
