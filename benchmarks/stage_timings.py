"""Per-stage timings of whole creations through the real graph (embedded model, offline backends).

    .venv/bin/python benchmarks/stage_timings.py [--n 5] [--policy hybrid] [--json]

Reports model load times, then for each stage (decide, enhance_prompt, text_to_image, image_to_3d,
recall_similar) the median and worst seconds, and the process's peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ATELIER_DATA_DIR", tempfile.mkdtemp(prefix="atelier-bench-"))
os.environ.setdefault("ATELIER_IMAGE_BACKENDS", "sketch")
os.environ.setdefault("ATELIER_MODEL_BACKENDS", "relief")

IDEAS = ["a glowing dragon standing on a cliff at sunset", "a brass owl automaton", "a cozy cabin in a snowy forest",
         "a viking longship in a storm", "a crystal cave with an underground lake", "a robot gardener watering tulips"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--policy", default="hybrid")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from agent.cli import run_turn
    from agent.graph import build_graph
    from memory import embeddings
    from memory.session import checkpointer
    from models.llm import get_llm

    loads = {}
    t = time.perf_counter()
    get_llm()
    loads["llm_load"] = time.perf_counter() - t
    t = time.perf_counter()
    embeddings.embed(["warm"])
    loads["embedder_load"] = time.perf_counter() - t
    graph = build_graph(checkpointer=checkpointer())
    stages: dict[str, list[float]] = {}
    totals = []
    for i in range(args.n):
        config = {"configurable": {"thread_id": f"bench-{i}", "user_id": "bench", "decision_policy": args.policy}}
        result = run_turn(graph, IDEAS[i % len(IDEAS)], config)
        tool_seconds = 0.0
        for step in result["steps"]:
            stages.setdefault(step["tool"], []).append(step["seconds"])
            tool_seconds += step["seconds"]
        stages.setdefault("decide+respond", []).append(result["seconds"] - tool_seconds)
        totals.append(result["seconds"])
    config = {"configurable": {"thread_id": "bench-recall", "user_id": "bench", "decision_policy": args.policy}}
    for step in run_turn(graph, "show me the dragon I made earlier", config)["steps"]:
        stages.setdefault(step["tool"], []).append(step["seconds"])
    report = {
        "policy": args.policy, "model": get_llm().name, "n": args.n, "cpu_count": os.cpu_count(),
        "loads_seconds": {k: round(v, 2) for k, v in loads.items()},
        "stages": {k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3), "n": len(v)} for k, v in stages.items()},
        "creation_total": {"median": round(statistics.median(totals), 2), "max": round(max(totals), 2)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"policy={report['policy']} model={report['model']} n={args.n} cores={report['cpu_count']} peak RSS {report['peak_rss_mb']} MB")
        print("loads: " + ", ".join(f"{k} {v}s" for k, v in report["loads_seconds"].items()))
        for k, v in report["stages"].items():
            print(f"  {k:16s} median {v['median']:6.2f}s  max {v['max']:6.2f}s  (n={v['n']})")
        print(f"  whole creation   median {report['creation_total']['median']:6.2f}s  max {report['creation_total']['max']:6.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
