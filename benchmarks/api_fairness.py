"""One user's queue against another user's run on the LangGraph API server (issue 21 item 2).

    .venv/bin/python benchmarks/api_fairness.py                   # 2,000 runs queued by one user, then another's
    .venv/bin/python benchmarks/api_fairness.py --queued 40 --json
    .venv/bin/python benchmarks/api_fairness.py --server-env ATELIER_API_WAKE_QUEUE=0   # the runtime's 0.5 s poll

Starts `atelier serve` on a free port (temporary data dir, fast local backends: sketch, router, no enhance, no
3D; 8 jobs), with the pending-run caps raised above --queued so the whole pile is accepted. User "flood" queues
--queued runs on one thread (multitask_strategy="enqueue", 16 requests in flight); then user "other" runs one
creation on a thread of its own, --repeats times. Reported for the other user's run:
  start     the run's first checkpoint minus its creation time (server clock: the queue wait)
  done      client time from POST .../runs/wait to its answer
and how many of flood's runs were still waiting when each of other's runs was done (the whole pile was still in
front of it), plus the time it took to queue the pile. With the runtime's own scheduler the other run waited for
every queued run (the oldest pending run's thread was busy, so each round found nothing).
Loopback only; flood's runs are cancelled at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import LocalServer, percentile  # noqa: E402

RUN = {"enhance": False, "auto_3d": False}


async def queue_pile(client, thread_id: str, n: int, in_flight: int = 16) -> list[int]:
    limit = asyncio.Semaphore(in_flight)

    async def one(i: int) -> int:
        async with limit:
            response = await client.post(f"/threads/{thread_id}/runs", json={
                "assistant_id": "atelier", "multitask_strategy": "enqueue", "config": {"configurable": RUN},
                "input": {"messages": [{"role": "user", "content": f"a tin robot number {i}"}]}})
            return response.status_code
    return await asyncio.gather(*(one(i) for i in range(n)))


async def other_run(client, i: int) -> dict:
    thread_id = (await client.post("/threads", json={})).json()["thread_id"]
    started = time.monotonic()
    answer = await client.post(f"/threads/{thread_id}/runs/wait", json={
        "assistant_id": "atelier", "config": {"configurable": RUN},
        "input": {"messages": [{"role": "user", "content": f"a brass owl {i}"}]}})
    done = time.monotonic() - started
    run = (await client.get(f"/threads/{thread_id}/runs")).json()[0]
    history = (await client.get(f"/threads/{thread_id}/history", params={"limit": 50})).json()
    first = min(datetime.fromisoformat(h["created_at"]) for h in history)
    return {"status": answer.status_code, "run_status": run["status"], "done": round(done, 3),
            "start": round((first - datetime.fromisoformat(run["created_at"])).total_seconds(), 3)}


async def waiting(client, thread_id: str) -> int:
    runs = (await client.get(f"/threads/{thread_id}/runs", params={"limit": 10_000, "status": "pending"})).json()
    return sum(r["status"] == "pending" for r in runs)


async def run(queued: int = 2000, repeats: int = 5, jobs: int = 8, server_env: dict | None = None) -> dict:
    import httpx

    env = {"ATELIER_API_MAX_PENDING_RUNS_PER_USER": str(queued + 10), "ATELIER_API_MAX_PENDING_RUNS_PER_THREAD": str(queued + 10),
           "ATELIER_API_MAX_BODY_BYTES": "262144", **(server_env or {})}
    server = LocalServer(jobs, extra_env=env)
    try:
        await server.wait()
        async with httpx.AsyncClient(base_url=server.url, headers={"X-Atelier-User": "flood"}, timeout=600) as flood, \
                httpx.AsyncClient(base_url=server.url, headers={"X-Atelier-User": "other"}, timeout=600) as other:
            await other_run(other, -1)  # warm the graph once, so the timings below are the queue's
            thread_id = (await flood.post("/threads", json={})).json()["thread_id"]
            started = time.monotonic()
            codes = await queue_pile(flood, thread_id, queued)
            queue_seconds = time.monotonic() - started
            results = []
            for i in range(repeats):
                result = await other_run(other, i)
                result["flood_waiting_after"] = await waiting(flood, thread_id)
                results.append(result)
            await flood.post("/runs/cancel", json={"status": "pending"})
        starts, dones = [r["start"] for r in results], [r["done"] for r in results]
        return {"queued": queued, "accepted": sum(c == 200 for c in codes), "refused": sum(c != 200 for c in codes),
                "queue_seconds": round(queue_seconds, 1), "repeats": repeats, "server_jobs": jobs, "server_env": server_env or {},
                "start": {"p50": percentile(starts, 0.5), "max": percentile(starts, 1.0)},
                "done": {"p50": percentile(dones, 0.5), "max": percentile(dones, 1.0)},
                "flood_waiting_after": [r["flood_waiting_after"] for r in results], "runs": results,
                "cpus": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()]}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=2000, help="runs the flooding user queues on one thread")
    parser.add_argument("--repeats", type=int, default=5, help="the other user's runs, one after another")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    server_env = dict(item.split("=", 1) for item in args.server_env)
    report = asyncio.run(run(args.queued, args.repeats, args.jobs, server_env))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['accepted']}/{report['queued']} runs queued by one user in {report['queue_seconds']} s "
              f"({report['cpus']} CPUs, load average {report['load_average']})")
        print(f"  another user's run: start p50 {report['start']['p50']} s (max {report['start']['max']}), "
              f"done p50 {report['done']['p50']} s (max {report['done']['max']})")
        print(f"  the queue's runs still waiting after each: {report['flood_waiting_after']}")
    return 0 if report["start"]["max"] is not None and all(r["status"] == 200 for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
