"""Seconds from a cold `atelier` call to its first work.

    .venv/bin/python benchmarks/cold_start.py [--n 3] [--root CHECKOUT] [--json]

- `import agent.cli`: the bare import (what every command pays; `--help` costs this).
- `atelier recall`: spawn to exit. The search itself takes ~20 ms, so this is all start-up: imports, the
  embedding model, SQLite, Chroma.
- `atelier create --no-enhance`: spawn to the decision (the log line `step=decide ... tool=text_to_image`), i.e.
  imports, model loads and the decision before the first tool runs; and spawn to exit.
Also the embedder and LLM load seconds the process logged. Median of n cold processes, seeded data dir,
offline backends. --root: another checkout with the same venv, for before/after.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli_runs import IDEAS, ROOT, environment, run_cli, seeded_data_dir  # noqa: E402


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.root.resolve()
    env_for = lambda data: environment(data, root)  # noqa: E731
    data = seeded_data_dir(env_for, root)
    rows = []

    imports = []
    for _ in range(args.n):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import agent.cli"], cwd=root, env=env_for(data), check=True)
        imports.append(time.perf_counter() - started)
    rows.append({"command": "python -c 'import agent.cli'", "to_first_work": _median(imports), "total": _median(imports)})

    recalls = [run_cli(["recall", "the owl I made", "--json"], env_for(data), root) for _ in range(args.n)]
    rows.append({"command": "atelier recall", "to_first_work": _median(r.seconds for r in recalls),
                 "total": _median(r.seconds for r in recalls), "embedder_load": _median(r.logged("load_embedder") for r in recalls)})

    creates = [run_cli(["create", IDEAS[i % len(IDEAS)], "--no-enhance", "--json"], env_for(data), root) for i in range(args.n)]
    bad = [r for r in creates + recalls if r.returncode != 0]
    if bad:
        raise SystemExit(f"{bad[0].argv} failed: " + "\n".join(line for _, line in bad[0].lines[-5:]))
    rows.append({"command": "atelier create --no-enhance", "to_first_work": _median(r.first(r"step=decide .*tool=text_to_image") for r in creates),
                 "total": _median(r.seconds for r in creates), "embedder_load": _median(r.logged("load_embedder") for r in creates),
                 "llm_load": _median(r.logged("load_llm") for r in creates),
                 "llm_loaded_in": f"{sum(r.logged('load_llm') is not None for r in creates)}/{len(creates)}"})
    result = {"root": str(root), "n": args.n, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"checkout: {root}\n\n| cold call (median of {args.n}) | to first work | total | embedder load | LLM load |")
    print("|---|---|---|---|---|")
    for r in rows:
        llm = f"{r['llm_load']} s ({r['llm_loaded_in']} runs)" if r.get("llm_load") is not None else "-"
        emb = f"{r['embedder_load']} s" if r.get("embedder_load") is not None else "-"
        print(f"| `{r['command']}` | {r['to_first_work']} s | {r['total']} s | {emb} | {llm} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
