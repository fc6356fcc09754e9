"""Time the offline pipeline: sketch (text -> PNG) then relief (PNG -> GLB), no model weights involved.

    .venv/bin/python benchmarks/relief_bench.py [--size 512] [--grid 128] [--repeat 3]

Prints one line per prompt (best of --repeat runs) and a summary; exits non-zero if a mesh is not watertight,
has fewer than 5,000 faces, or a GLB is over 10 MB.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.backends.base import ImageRequest, MeshRequest  # noqa: E402
from tools.backends.relief import ReliefBackend  # noqa: E402
from tools.backends.sketch import SketchBackend  # noqa: E402

PROMPTS = [
    "a glowing lighthouse at sunset",
    "a red fox in a misty forest",
    "a crystal cave at night, glowing",
    "a cozy cabin in winter snow",
    "neon cyberpunk robot",
    "a sailboat on the ocean",
]


def best_of(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sketch, relief = SketchBackend(), ReliefBackend(grid=args.grid)
    relief.generate(MeshRequest(image=sketch.generate(ImageRequest(prompt="warm up", width=64, height=64))[0].data))

    failures, rows = 0, []
    print(f"{'prompt':36s} {'sketch s':>8s} {'relief s':>8s} {'faces':>7s} {'GLB MB':>7s} {'mask':>15s} fg")
    for prompt in PROMPTS:
        t_img, images = best_of(lambda prompt=prompt: sketch.generate(ImageRequest(prompt=prompt, width=args.size, height=args.size)), args.repeat)
        t_mesh, models = best_of(lambda images=images: relief.generate(MeshRequest(image=images[0].data)), args.repeat)
        md, size_mb = models[0].metadata, len(models[0].data) / 1e6
        rows.append((t_img, t_mesh, md["faces"], size_mb))
        print(f"{prompt:36s} {t_img:8.3f} {t_mesh:8.3f} {md['faces']:7d} {size_mb:7.2f} {md['mask']:>15s} {md['foreground_fraction']:.3f}")
        if not md["watertight"] or md["faces"] < 5000 or size_mb > 10:
            failures += 1
    print(f"median: sketch {statistics.median(r[0] for r in rows):.3f}s, relief {statistics.median(r[1] for r in rows):.3f}s, "
          f"{statistics.median(r[2] for r in rows):.0f} faces, {statistics.median(r[3] for r in rows):.2f} MB")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
