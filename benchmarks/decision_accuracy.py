"""Decision accuracy per policy on the labelled set tests/support/data/decisions.jsonl.

    .venv/bin/python benchmarks/decision_accuracy.py [--policies router,hybrid,model] [--limit N] [--json]

A request counts as correct when the whole sequence of tools the policy chooses equals the label. The model
sees what the graph gives it (the conversation so far, the tools as standard tool schemas). Set
ATELIER_LLM_PATH / ATELIER_LLM_URL to measure another model; `atelier eval decisions` runs the same
measurement and stores it for policy auto.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import calibration  # noqa: E402
from models.llm import get_llm  # noqa: E402

DATASET = calibration.DATASET


def load() -> list[dict]:
    return calibration.load_dataset()


def evaluate(policy: str, items: list[dict] | None = None) -> dict:
    return calibration.evaluate(policy, items or load(), None if policy == "router" else get_llm())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policies", default="router,hybrid,model")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = load()[: args.limit] if args.limit else load()
    results = [evaluate(p, items) for p in args.policies.split(",")]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{r['policy']:7s} {r['model']:45s} plan {r['accuracy']*100:5.1f}%  first step {r['first_step_accuracy']*100:5.1f}%  "
                  f"{r['seconds_per_request']:.2f}s/request  (n={r['n']}, router unsure on {r['router_unsure']}, "
                  f"model decided on {r['model_decided_requests']})")
            for m in r["misses"]:
                print(f"    miss: {m['text']!r} expected {m['expected']} got {m['got']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
