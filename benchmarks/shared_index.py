"""Two processes writing one data dir at once (the chat and the API server): throughput and index integrity.

    .venv/bin/python benchmarks/shared_index.py                 # 10 rounds, 2 processes x 20 creations each
    .venv/bin/python benchmarks/shared_index.py --rounds 25 --n 40 --json

Each round starts two writer processes on a fresh data dir; both commit N creations (SQLite records, asset
files, embedded Chroma) as fast as they can. Then a third, fresh process checks that SQL holds 2N creations
and that every vector is reachable in Chroma's graph: queried with its own embedding (filtered to its user,
as recall does) it must come back first. Reported: creations/s over the two writers, and unreachable vectors
per round (the figure that must be 0).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}, "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "ATELIER_LOG_LEVEL": "WARNING",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

WRITER = r"""
import os, sys, time
from memory.store import get_store
from tools.backends.base import GeneratedAsset
tag, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = get_store()
store.ensure_index()
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
things = ["red fox", "blue whale", "green castle", "copper teapot", "paper crane"]
for i in range(n):
    store.create(user_id=f"user-{tag}", thread_id=tag, original_prompt=f"{things[i % 5]} number {i} by {tag}",
                 enhanced_prompt=f"{things[i % 5]} {i}, detailed",
                 assets=[GeneratedAsset(kind="image", data=f"{tag}-{i}".encode() * 64, mime="image/png", backend="bench")])
print("done", flush=True)
"""

CHECK = r"""
import json
from memory.store import get_store
store = get_store()
print(json.dumps({"records": store.count(), "vectors": store.index.count(), "unreachable": len(store.index.unreachable())}))
"""


def one_round(n: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="atelier-shared-index-"))
    env = {**ENV, "ATELIER_DATA_DIR": str(data)}
    try:
        subprocess.run([sys.executable, "-c", "from memory.store import get_store; get_store()"], env=env, check=True, timeout=120)
        go = data / "go"
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, tag, str(n), str(go)], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for tag in ("chat", "api")]
        for w in writers:  # each loads MiniLM first; the race starts when both are ready
            for line in w.stdout:
                if line.strip() == "ready":
                    break
        started = time.perf_counter()
        go.touch()
        outputs = [w.communicate(timeout=300)[0] for w in writers]
        seconds = time.perf_counter() - started
        if any(w.returncode for w in writers):
            raise RuntimeError("a writer failed:\n" + "\n".join(o[-2000:] for o in outputs))
        check = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120, check=True)
        result = json.loads(check.stdout.strip().splitlines()[-1])
        return {**result, "seconds": round(seconds, 2), "per_second": round(2 * n / seconds, 2)}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--n", type=int, default=20, help="creations per writer process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rounds = []
    for i in range(args.rounds):
        rounds.append(one_round(args.n))
        if not args.json:
            print(f"round {i + 1}: {rounds[-1]}", flush=True)
    summary = {
        "rounds": args.rounds, "creations_per_round": 2 * args.n,
        "lost_records": sum(2 * args.n - r["records"] for r in rounds),
        "missing_vectors": sum(r["records"] - r["vectors"] for r in rounds),
        "unreachable_vectors": sum(r["unreachable"] for r in rounds),
        "rounds_with_unreachable": sum(1 for r in rounds if r["unreachable"]),
        "creations_per_second_median": statistics.median(r["per_second"] for r in rounds),
    }
    print(json.dumps(summary) if args.json else
          f"\n{args.rounds} rounds x {2 * args.n} creations from 2 processes: lost records {summary['lost_records']}, "
          f"missing vectors {summary['missing_vectors']}, unreachable vectors {summary['unreachable_vectors']} "
          f"(in {summary['rounds_with_unreachable']} rounds); median {summary['creations_per_second_median']} creations/s")
    return 0 if not (summary["lost_records"] or summary["missing_vectors"] or summary["unreachable_vectors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
