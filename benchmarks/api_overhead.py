"""What the LangGraph API server adds to a run: the same graph in-process vs through `atelier serve`.

    .venv/bin/python benchmarks/api_overhead.py                 # 10 runs of each, prints the table
    .venv/bin/python benchmarks/api_overhead.py --n 20 --json
    .venv/bin/python benchmarks/api_overhead.py --server-env ATELIER_API_WAKE_QUEUE=0   # the runtime as shipped

Warm (two runs of each path first), router policy, no enhance, offline backends (sketch image, relief mesh): the
whole creation, decide -> text_to_image -> image_to_3d -> respond. Each run gets a new thread, and the client
creates it before the timed part (in-process there is nothing to create).

  in-process   graph.stream(..., stream_mode=["updates", "custom"]) with an in-memory checkpointer
  api wait     langgraph-sdk client.runs.wait(thread, "atelier", input=...)           (one HTTP request)
  api stream   langgraph-sdk client.runs.stream(..., stream_mode=["updates", "custom"]) (SSE until the end)

Printed: p50 / p95 of each and the API's difference to in-process (p50 - p50), and, from the server's own log
lines ("Background run succeeded": run_wait_time_ms = queued until a worker took it, run_exec_ms = the graph in
the worker), where the difference goes. Loopback only, a temporary data dir; the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from api_load import FAST_ENV, IDEAS, LocalServer, percentile  # noqa: E402

CONFIGURABLE = {"enhance": False, "user_id": "bench"}


def stats(values: list[float]) -> dict:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "n": len(values)}


def in_process(n: int, data_dir: Path) -> list[float]:
    """The same graph, same settings, in this process."""
    os.environ.update(FAST_ENV, ATELIER_DATA_DIR=str(data_dir))
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.graph import build_graph

    graph = build_graph(checkpointer=InMemorySaver())
    times = []
    for i in range(-2, n):
        config = {"configurable": {**CONFIGURABLE, "thread_id": uuid.uuid4().hex}}
        started = time.perf_counter()
        for _ in graph.stream({"messages": [HumanMessage(f"{IDEAS[i % len(IDEAS)]} number {i}")]}, config, stream_mode=["updates", "custom"]):
            pass
        if i >= 0:
            times.append(time.perf_counter() - started)
    return times


async def through_api(url: str, n: int) -> dict[str, list[float]]:
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=120, headers={"X-Atelier-User": "bench"})
    out: dict[str, list[float]] = {"wait": [], "stream": [], "thread_create": []}
    for i in range(-2, n):
        for mode in ("wait", "stream"):
            idea = f"{IDEAS[i % len(IDEAS)]} via {mode} {i}"
            started = time.perf_counter()
            thread = await client.threads.create()
            created = time.perf_counter()
            payload = {"input": {"messages": [{"role": "user", "content": idea}]}, "config": {"configurable": CONFIGURABLE}}
            if mode == "wait":
                result = await client.runs.wait(thread["thread_id"], "atelier", **payload)
                assert result.get("creation_id"), result
            else:
                async for part in client.runs.stream(thread["thread_id"], "atelier", stream_mode=["updates", "custom"], **payload):
                    assert part.event != "error", part.data
            if i >= 0:
                out[mode].append(time.perf_counter() - created)
                out["thread_create"].append(created - started)
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def server_breakdown(log: Path, skip: int) -> dict:
    """run_wait_time_ms / run_exec_ms of each finished run, from the server's log (the warm-up runs skipped)."""
    waits, execs = [], []
    for line in log.read_text(errors="replace").splitlines():
        line = _ANSI.sub("", line)
        if "Background run succeeded" in line:
            wait = re.search(r"run_wait_time_ms=(\d+)", line)
            run_exec = re.search(r"run_exec_ms=(\d+)", line)
            if wait and run_exec:
                waits.append(int(wait.group(1)) / 1000)
                execs.append(int(run_exec.group(1)) / 1000)
    return {"queue_wait": stats(waits[skip:]), "worker_exec": stats(execs[skip:])}


async def measure(n: int, server_env: dict[str, str]) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="atelier-overhead-"))
    local = in_process(n, data_dir / "inproc")
    server = LocalServer(jobs=int(server_env.get("ATELIER_API_JOBS", 8)), data_dir=data_dir,
                         extra_env={"ATELIER_API_LOG_LEVEL": "INFO", **server_env})
    try:
        await server.wait()
        api = await through_api(server.url, n)
    finally:
        server.stop()
    report = {"n": n, "server_env": server_env, "cpus": os.cpu_count(), "in_process": stats(local),
              "api_wait": stats(api["wait"]), "api_stream": stats(api["stream"]), "thread_create": stats(api["thread_create"]),
              "server": server_breakdown(data_dir / "api.log", skip=4)}
    for mode in ("api_wait", "api_stream"):
        report[f"{mode}_minus_in_process_p50"] = round(report[mode]["p50"] - report["in_process"]["p50"], 3)
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10, help="timed runs of each path (after two warm-up runs)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.server_env)
    report = asyncio.run(measure(args.n, env))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.n} runs each, {report['cpus']} CPUs, server env {env or '-'}")
    for key in ("in_process", "api_wait", "api_stream", "thread_create"):
        print(f"  {key:<14} p50 {report[key]['p50']:.3f} s  p95 {report[key]['p95']:.3f} s")
    print(f"  api wait - in-process (p50)   {report['api_wait_minus_in_process_p50']:+.3f} s")
    print(f"  api stream - in-process (p50) {report['api_stream_minus_in_process_p50']:+.3f} s")
    srv = report["server"]
    print(f"  server: queued until a worker took the run p50 {srv['queue_wait']['p50']} s p95 {srv['queue_wait']['p95']} s;"
          f" graph in the worker p50 {srv['worker_exec']['p50']} s p95 {srv['worker_exec']['p95']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
