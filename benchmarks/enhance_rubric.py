"""enhance_prompt over tests/support/data/enhance_ideas.txt (or, with --heldout, the held-out ideas in
benchmarks/data/enhance_heldout.txt): rubric pass rate, subject drift, how often the additions copy the
prompt's own worked examples, and how distinct the additions are across the ideas.

    .venv/bin/python benchmarks/enhance_rubric.py [--heldout] [--limit N] [--free-form] [--json] [--out FILE]

subject_drift_rate: share of ideas whose final prompt adds a creature, person, vehicle or object the idea does
not have (tools/subjects.py's lexicon; target 0). The same lexicon drops such additions where they are chosen,
so this figure is checked by reading the prompts too (--out writes them, one per line, to read).
proposed_drift_rate: share of ideas where the model *proposed* such an addition (the check dropped it): what
the enforcement prevents. order_kept_rate: the idea's words first, in their order.
copied_phrase_rate: share of ideas whose final prompt contains a phrase (whole, or a run of three words) from
any example in tools/prompts.py's pool — not only the one shown (target 0 %).
distinct_additions: unique addition phrases / all addition phrases over the ideas (1.0 = no phrase reused).
repeated_across_unrelated: phrases that appear for two or more ideas sharing no content word.
--free-form also asks the same model for a free-form rewrite, to show why the constrained design exists.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.llm import get_llm  # noqa: E402
from tools.clip_tokens import count_tokens  # noqa: E402
from tools.enhance import additions_of, copied_phrases, enhance, fit_idea, keeps_order, rubric, unrelated  # noqa: E402
from tools.prompts import ENHANCE_EXAMPLES  # noqa: E402
from tools.subjects import new_subjects  # noqa: E402


def read_ideas(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


IDEAS = read_ideas(ROOT / "tests" / "support" / "data" / "enhance_ideas.txt")
HELDOUT = read_ideas(ROOT / "benchmarks" / "data" / "enhance_heldout.txt")


def free_form(llm, idea: str) -> str:
    return llm.chat([{"role": "user", "content": f"Rewrite this idea as a detailed image generation prompt: {idea}"}],
                    max_tokens=90, temperature=0.3, seed=0).strip()


def distinctness(made: list[tuple[str, list[str]]]) -> dict:
    """How distinct the additions are across ideas, and which phrases recur for unrelated ideas."""
    phrases = [p for _, adds in made for p in adds]
    by_phrase: dict[str, list[str]] = {}
    for idea, adds in made:
        for p in set(adds):
            by_phrase.setdefault(p, []).append(idea)
    repeated = {p: ideas for p, ideas in by_phrase.items()
                if len(ideas) >= 2 and any(unrelated(a, b) for i, a in enumerate(ideas) for b in ideas[i + 1:])}
    return {"distinct_additions": round(len(set(phrases)) / len(phrases), 4) if phrases else 1.0,
            "repeated_across_unrelated": dict(sorted(repeated.items(), key=lambda kv: -len(kv[1]))[:10]),
            "most_common": Counter(phrases).most_common(5)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int)
    parser.add_argument("--free-form", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--heldout", action="store_true", help="the held-out ideas (benchmarks/data/enhance_heldout.txt)")
    parser.add_argument("--out", type=Path, help="write 'idea => prompt' lines here, to read")
    args = parser.parse_args()
    pool = HELDOUT if args.heldout else IDEAS
    ideas = pool[: args.limit] if args.limit else pool
    llm = get_llm()
    times, passed, from_model, tokens, free_passed, copied, made = [], 0, 0, [], 0, 0, []
    drifted, proposed, ordered, failures, lines = [], 0, 0, [], []
    for idea in ideas:
        started = time.perf_counter()
        result = enhance(idea, llm)
        times.append(time.perf_counter() - started)
        problems = rubric(idea, result.prompt)
        passed += not problems
        if problems:
            failures.append(f"{idea} => {result.prompt} ({'; '.join(problems)})")
        kept = fit_idea(idea)
        if drift := new_subjects(kept, ", ".join(additions_of(kept, result.prompt))):
            drifted.append(f"{idea}: {', '.join(drift)}")
        proposed += bool(result.dropped)
        ordered += keeps_order(kept, result.prompt) and result.prompt.lower().startswith(kept.lower())
        lines.append(f"{idea} => {result.prompt}  [{result.source}{'; dropped: ' + ' | '.join(result.dropped) if result.dropped else ''}]")
        if args.out:  # written as it goes: a slow, shared box can read the prompts before the end
            args.out.write_text("\n".join(lines) + "\n")
        from_model += result.source != "repaired"
        tokens.append(count_tokens(result.prompt))
        adds = additions_of(idea, result.prompt)
        copied += bool(copied_phrases(adds, ENHANCE_EXAMPLES))
        made.append((idea, adds))
        if args.free_form:
            free_passed += not rubric(idea, free_form(llm, idea))
    n = len(ideas)
    report = {"model": llm.name, "set": "heldout" if args.heldout else "tests", "n": n, "pass_rate": round(passed / n, 4),
              "subject_drift_rate": round(len(drifted) / n, 4), "drifted": drifted, "proposed_drift_rate": round(proposed / n, 4),
              "order_kept_rate": round(ordered / n, 4), "failures": failures, "model_additions_used": round(from_model / n, 4),
              "copied_phrase_rate": round(copied / n, 4), **distinctness(made),
              "free_form_pass_rate": round(free_passed / n, 4) if args.free_form else None,
              "median_seconds": round(statistics.median(times), 2), "max_clip_tokens": max(tokens),
              "median_clip_tokens": statistics.median(tokens), "prompts": [f"{i} => {', '.join(a)}" for i, a in made]}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"enhance_prompt ({report['model']}, {report['set']}, n={n}): rubric pass {report['pass_rate']:.0%}, "
              f"subject drift {report['subject_drift_rate']:.0%} (the model proposed a new subject for {report['proposed_drift_rate']:.0%}, "
              f"dropped), idea kept first and in order {report['order_kept_rate']:.0%}, model additions kept "
              f"{report['model_additions_used']:.0%}, copied-phrase rate {report['copied_phrase_rate']:.0%}, distinct additions "
              f"{report['distinct_additions']:.0%}, phrases repeated across unrelated ideas {len(report['repeated_across_unrelated'])}"
              + (f", free-form rewrite passes {report['free_form_pass_rate']:.0%}" if args.free_form else "")
              + f"; median {report['median_seconds']}s, CLIP tokens median {report['median_clip_tokens']} max {report['max_clip_tokens']}")
        for p, ideas_with in report["repeated_across_unrelated"].items():
            print(f"    repeated: {p!r} for {ideas_with}")
        for line in drifted + failures:
            print(f"    {line}")
    if args.heldout and (drifted or passed / n < 0.95):
        return 1  # the targets: drift 0, rubric pass >= 95 %
    return 0


if __name__ == "__main__":
    sys.exit(main())
