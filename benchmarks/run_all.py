"""Every benchmark in one go (`make bench`); prints the figures the README quotes.

Run on an otherwise idle machine: the timings are wall-clock on 2 cores.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ["decision_accuracy.py"],
    ["enhance_rubric.py"],
    ["stage_timings.py", "--n", "6"],
    ["relief_bench.py"],
    ["api_load.py"],
    ["shared_index.py"],
]

if __name__ == "__main__":
    failed = 0
    for script in SCRIPTS:
        if not (HERE / script[0]).exists():
            continue
        print(f"\n### {' '.join(script)}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script[0]), *script[1:]]) != 0
    sys.exit(1 if failed else 0)
