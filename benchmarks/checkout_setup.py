"""Seconds scripts/bootstrap.sh takes for a new checkout when the lock's cached venv already exists.

    .venv/bin/python benchmarks/checkout_setup.py [--clones 2] [--steps python] [--json]

Clones this repository's HEAD into a temporary folder --clones times and runs `bootstrap.sh STEPS` in each, one
after the other, on the shared cached venv (ATELIER_CACHE, default ~/.cache/atelier), then once more in the
first (a setup with nothing to do). Steps: python (the per-checkout .venv: venv, .pth, console-script wrappers,
editable install), assets (npm ci + the viewer's files), models (`atelier setup`); `system` needs root.
It never builds the cached venv: without one for this lock it stops and says so.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bootstrap(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / "scripts" / "bootstrap.sh"), *args], cwd=checkout, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clones", type=int, default=2)
    parser.add_argument("--steps", default="python")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cached = Path(bootstrap(ROOT, "--cached-venv").stdout.strip())
    if not (cached / ".complete").exists():
        raise SystemExit(f"no cached venv for this lock at {cached}: `make setup` builds it first (~10 min)")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        checkouts = []
        for i in range(args.clones):
            checkout = Path(work) / f"checkout-{i + 1}"
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
            checkouts.append(checkout)
            started = time.perf_counter()
            done = bootstrap(checkout, *args.steps.split())
            rows.append({"run": f"checkout {i + 1}, new", "steps": args.steps, "seconds": round(time.perf_counter() - started, 1),
                         "ok": done.returncode == 0})
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        started = time.perf_counter()
        done = bootstrap(checkouts[0], *args.steps.split())
        rows.append({"run": "checkout 1, again", "steps": args.steps, "seconds": round(time.perf_counter() - started, 1),
                     "ok": done.returncode == 0})
    if args.json:
        print(json.dumps({"cached_venv": str(cached), "rows": rows}, indent=2))
    else:
        print(f"cached venv {cached}")
        for row in rows:
            print(f"{row['run']:<20} {row['steps']:<24} {row['seconds']:>6} s  {'ok' if row['ok'] else 'FAILED'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
