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

The three are taken in turn (in-process, wait, stream, in-process, ...) so they see the same load; printed: p50 /
p95 of each and of the per-round difference api - in-process, and, from the server's own log
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


class InProcess:
    """The same graph, same settings, in this process."""

    def __init__(self, data_dir: Path):
        os.environ.update(FAST_ENV, ATELIER_DATA_DIR=str(data_dir))
        from langgraph.checkpoint.memory import InMemorySaver

        from agent.graph import build_graph

        self.graph = build_graph(checkpointer=InMemorySaver())

    def run(self, idea: str) -> float:
        from langchain_core.messages import HumanMessage

        config = {"configurable": {**CONFIGURABLE, "thread_id": uuid.uuid4().hex}}
        started = time.perf_counter()
        for _ in self.graph.stream({"messages": [HumanMessage(idea)]}, config, stream_mode=["updates", "custom"]):
            pass
        return time.perf_counter() - started


async def api_run(client, mode: str, idea: str) -> tuple[float, float]:
    """(thread create seconds, run seconds) of one run through the server."""
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
    return created - started, time.perf_counter() - created


async def interleaved(url: str, local: InProcess, n: int) -> dict[str, list[float]]:
    """In-process, api wait and api stream runs taken in turn, so all three see the same load on the machine."""
    from langgraph_sdk import get_client

    client = get_client(url=url, timeout=120, headers={"X-Atelier-User": "bench"})
    out: dict[str, list[float]] = {"in_process": [], "wait": [], "stream": [], "thread_create": [], "wait_diff": [], "stream_diff": []}
    for i in range(-2, n):  # two warm-up rounds
        idea = f"{IDEAS[i % len(IDEAS)]} number {i}"
        local_s = local.run(idea)
        create_w, wait_s = await api_run(client, "wait", idea + " (wait)")
        create_s, stream_s = await api_run(client, "stream", idea + " (stream)")
        if i >= 0:
            out["in_process"].append(local_s)
            out["wait"].append(wait_s)
            out["stream"].append(stream_s)
            out["thread_create"] += [create_w, create_s]
            out["wait_diff"].append(wait_s - local_s)
            out["stream_diff"].append(stream_s - local_s)
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
    (data_dir / "api").mkdir()
    server = LocalServer(jobs=int(server_env.get("ATELIER_API_JOBS", 8)), data_dir=data_dir / "api",
                         extra_env={"ATELIER_API_LOG_LEVEL": "INFO", **server_env})
    try:
        local = InProcess(data_dir / "inproc")
        await server.wait()
        runs = await interleaved(server.url, local, n)
    finally:
        server.stop()
    report = {"n": n, "server_env": server_env, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "in_process": stats(runs["in_process"]), "api_wait": stats(runs["wait"]), "api_stream": stats(runs["stream"]),
              "thread_create": stats(runs["thread_create"]),
              "api_wait_minus_in_process": stats(runs["wait_diff"]), "api_stream_minus_in_process": stats(runs["stream_diff"]),
              "server": server_breakdown(data_dir / "api" / "api.log", skip=4)}
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
    print(f"{args.n} runs each, {report['cpus']} CPUs, load average {report['load_average'][0]:.1f}, server env {env or '-'}")
    for key in ("in_process", "api_wait", "api_stream", "thread_create", "api_wait_minus_in_process", "api_stream_minus_in_process"):
        print(f"  {key:<28} p50 {report[key]['p50']:+.3f} s  p95 {report[key]['p95']:+.3f} s")
    srv = report["server"]
    print(f"  server: queued until a worker took the run p50 {srv['queue_wait']['p50']} s p95 {srv['queue_wait']['p95']} s;"
          f" graph in the worker p50 {srv['worker_exec']['p50']} s p95 {srv['worker_exec']['p95']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
