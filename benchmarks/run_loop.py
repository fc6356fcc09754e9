"""agent/run.py's loop on its two graphs: the in-process graph vs a langgraph RemoteGraph on `atelier serve`
(what the studio runs in client mode, ATELIER_API_URL), and the async iterator (TurnStream, the studio's) vs the
plain sync loop (the CLI's).

    .venv/bin/python benchmarks/run_loop.py            # 5 warm runs of each, prints the table
    .venv/bin/python benchmarks/run_loop.py --n 10 --json

Router policy, no enhance, offline backends (sketch image, relief mesh): decide -> text_to_image -> image_to_3d ->
respond, a new thread per run (created through the API before the timed part, as the studio does). The paths are
taken in turn so they see the same load; printed: p50 / p95 seconds of each, and of RemoteGraph - in-process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5, help="timed runs of each path (after 2 warm-up rounds)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="atelier-run-loop-"))
    for key, value in {**FAST_ENV, "ATELIER_DATA_DIR": str(data_dir / "local")}.items():
        os.environ[key] = value
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.pregel.remote import RemoteGraph

    from agent.graph import build_graph
    from agent.run import TurnStream, run_turn

    local = build_graph(checkpointer=InMemorySaver())
    (data_dir / "api").mkdir(parents=True)
    server = LocalServer(jobs=2, data_dir=data_dir / "api")
    try:
        asyncio.run(server.wait())
        remote = RemoteGraph("atelier", url=server.url, headers={"X-Atelier-User": "bench"})

        def config(graph) -> dict:
            thread = str(uuid.uuid4())
            if graph is remote:
                remote.sync_client.threads.create(thread_id=thread, metadata={"user_id": "bench"})
            return {"configurable": {**CONFIGURABLE, "thread_id": thread}}

        def sync_run(graph, idea):
            cfg = config(graph)
            started = time.perf_counter()
            result = run_turn(graph, idea, cfg)
            assert [s["tool"] for s in result["steps"]] == ["text_to_image", "image_to_3d"], result["steps"]
            return time.perf_counter() - started

        def async_run(graph, idea):
            cfg = config(graph)

            async def go():
                stream = TurnStream(graph, idea, cfg)
                async for _ in stream:
                    pass
                return stream.result

            started = time.perf_counter()
            result = asyncio.run(go())
            assert len(result["steps"]) == 2
            return time.perf_counter() - started

        paths = {"in-process sync": lambda i: sync_run(local, i), "in-process async": lambda i: async_run(local, i),
                 "RemoteGraph sync": lambda i: sync_run(remote, i), "RemoteGraph async": lambda i: async_run(remote, i)}
        for round_ in range(2):
            for run in paths.values():
                run(IDEAS[round_ % len(IDEAS)])
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for i in range(args.n):
            for name, run in paths.items():
                seconds[name].append(run(IDEAS[i % len(IDEAS)]))
    finally:
        server.stop()
    diffs = [remote - local for remote, local in zip(seconds["RemoteGraph sync"], seconds["in-process sync"])]
    table = {name: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95)} for name, v in seconds.items()}
    table["RemoteGraph - in-process (sync)"] = {"p50": percentile(diffs, 0.5), "p95": percentile(diffs, 0.95)}
    if args.json:
        print(json.dumps({"n": args.n, "cpus": os.cpu_count(), "seconds": table}, indent=2))
    else:
        print(f"{args.n} warm runs of each, router, no enhance, sketch + relief, {os.cpu_count()} CPUs")
        print(f"{'path':34} {'p50 s':>8} {'p95 s':>8}")
        for name, row in table.items():
            print(f"{name:34} {row['p50']:>8} {row['p95']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
