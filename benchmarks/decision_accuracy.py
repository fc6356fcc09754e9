"""Decision accuracy per policy on the labelled set tests/data/decisions.jsonl.

    .venv/bin/python benchmarks/decision_accuracy.py [--policies router,hybrid,model] [--json]

A request counts as correct when the whole sequence of tools the policy chooses equals the label.
Set ATELIER_LLM_PATH / ATELIER_LLM_URL to measure another model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.decision import simulate_plan  # noqa: E402
from agent.llm import get_llm  # noqa: E402
from agent.router import get_router  # noqa: E402

DATASET = ROOT / "tests" / "data" / "decisions.jsonl"


def load() -> list[dict]:
    return [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]


def evaluate(policy: str, items: list[dict] | None = None) -> dict:
    items = items or load()
    router = get_router()
    llm = None if policy == "router" else get_llm()
    correct, first_correct, misses = 0, 0, []
    started = time.perf_counter()
    from agent.decision import UNSURE_MARGIN

    unsure = 0
    for item in items:
        intent = router.classify(item["text"])
        unsure += intent.via == "knn" and intent.margin < UNSURE_MARGIN
        plan = simulate_plan(item["text"], item["has_image"], intent, policy, llm)
        ok = plan == item["expected"]
        correct += ok
        first_correct += (plan[:1] == item["expected"][:1])
        if not ok:
            misses.append({"text": item["text"], "expected": item["expected"], "got": plan})
    n = len(items)
    return {"policy": policy, "model": llm.name if llm else "-", "n": n, "accuracy": round(correct / n, 4),
            "first_step_accuracy": round(first_correct / n, 4), "router_unsure": unsure, "seconds_per_request": round((time.perf_counter() - started) / n, 3),
            "misses": misses}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default="router,hybrid,model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [evaluate(p) for p in args.policies.split(",")]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{r['policy']:7s} {r['model']:45s} plan {r['accuracy']*100:5.1f}%  first step {r['first_step_accuracy']*100:5.1f}%  "
                  f"{r['seconds_per_request']:.2f}s/request  (n={r['n']}, router unsure on {r['router_unsure']})")
            for m in r["misses"]:
                print(f"    miss: {m['text']!r} expected {m['expected']} got {m['got']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
