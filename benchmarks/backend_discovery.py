"""What finding backends costs: each case in a fresh interpreter (import cost is what is measured), best of N.

    .venv/bin/python benchmarks/backend_discovery.py [--runs 3]

Cases: importing tools.backends; loading `sketch` by name (imports only tools/backends/sketch.py); the whole
registry (every built-in and every atelier.backends entry point, class attributes read, no instance made). For
each: seconds, and whether torch / diffusers / hy3dgen / transformers got imported (they must not).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "hy3dgen", "transformers")
CASES = {
    "import tools.backends": "import tools.backends",
    "load_backend('sketch')": "import tools.backends as b; b.load_backend('sketch', 'image')",
    "registry() (all backends)": "import tools.backends as b; b.registry()",
}
PROBE = """
import json, sys, time
started = time.perf_counter()
{code}
print(json.dumps({{"seconds": time.perf_counter() - started, "heavy": [m for m in {heavy!r} if m in sys.modules],
                  "modules": len(sys.modules)}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "ATELIER_LOG_LEVEL": "WARNING"}
    print(f"{'case':<28} {'best s':>8} {'modules':>8}  heavy imported")
    for name, code in CASES.items():
        results = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(results, key=lambda r: r["seconds"])
        print(f"{name:<28} {best['seconds']:>8.3f} {best['modules']:>8}  {', '.join(best['heavy']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
