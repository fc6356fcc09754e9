"""enhance_prompt pass rate against the rubric over tests/data/enhance_ideas.txt, and what a free-form
rewrite by the same model would score (why the constrained design exists).

    .venv/bin/python benchmarks/enhance_rubric.py [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.llm import get_llm  # noqa: E402
from tools.clip_tokens import count_tokens  # noqa: E402
from tools.enhance import enhance, rubric  # noqa: E402

IDEAS = [l.strip() for l in (ROOT / "tests" / "data" / "enhance_ideas.txt").read_text().splitlines() if l.strip()]


def free_form(llm, idea: str) -> str:
    return llm.chat([{"role": "user", "content": f"Rewrite this idea as a detailed image generation prompt: {idea}"}],
                    max_tokens=90, temperature=0.3, seed=0).strip()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    llm = get_llm()
    times, passed, from_model, tokens, free_passed = [], 0, 0, [], 0
    for idea in IDEAS:
        started = time.perf_counter()
        result = enhance(idea, llm)
        times.append(time.perf_counter() - started)
        passed += not rubric(idea, result.prompt)
        from_model += result.source != "repaired"
        tokens.append(count_tokens(result.prompt))
        free_passed += not rubric(idea, free_form(llm, idea))
    n = len(IDEAS)
    report = {"model": llm.name, "n": n, "pass_rate": round(passed / n, 4), "model_additions_used": round(from_model / n, 4),
              "free_form_pass_rate": round(free_passed / n, 4), "median_seconds": round(statistics.median(times), 2),
              "max_clip_tokens": max(tokens), "median_clip_tokens": statistics.median(tokens)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"enhance_prompt ({report['model']}, n={n}): rubric pass {report['pass_rate']:.0%}, model additions kept "
              f"{report['model_additions_used']:.0%}, free-form rewrite by the same model passes {report['free_form_pass_rate']:.0%}; "
              f"median {report['median_seconds']}s, CLIP tokens median {report['median_clip_tokens']} max {report['max_clip_tokens']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
