"""Time the learned mesh backend (tools/backends/hunyuan3d.py): load, first call, steady state, peak RSS / VRAM.

    .venv/bin/python benchmarks/mesh_backend.py --random tiny [--octree 64] [--steps N] [--repeat 3]
    .venv/bin/python benchmarks/mesh_backend.py --random 2mini --turbo --octree 256     # full-size, random weights
    .venv/bin/python benchmarks/mesh_backend.py --model models/hunyuan3d-2mini/hunyuan3d-dit-v2-mini-turbo

--random builds a random-weight shape folder with hy3dgen's own classes (tests/support/tiny_hunyuan3d.py): `tiny` is the
test model; `2mini` / `2.0` are the published architectures (DiT, ShapeVAE, DINOv2-giant conditioner at 518 px),
whose time does not depend on the weights. The VAE's field is rewired to cross zero (a sphere), so marching
cubes, simplification and colouring do real work. --out DIR keeps the built folder for the next run.
Everything runs through the real backend: matte, diffusion, volume decoding, clean-up, colour, GLB export.
Prints a table (and --json FILE writes it); exits non-zero if a mesh is not watertight or over the face budget.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach for a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def picture() -> bytes:
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (512, 512), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.ellipse((140, 90, 372, 420), fill=(200, 40, 40))
    d.rectangle((220, 40, 292, 120), fill=(60, 60, 200))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--random", choices=("tiny", "2mini", "2.0"))
    source.add_argument("--model", type=Path, help="an existing shape folder (config.yaml + weights)")
    parser.add_argument("--turbo", action="store_true", help="with --random: a turbo folder (5 steps, FlashVDM)")
    parser.add_argument("--out", type=Path, help="with --random: build here (reused when it already holds a model)")
    parser.add_argument("--octree", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="default: the variant's (turbo 5, else 30)")
    parser.add_argument("--max-faces", type=int, default=40000)
    parser.add_argument("--repeat", type=int, default=3, help="steady-state calls after the first")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core). On a shared, "
                        "oversubscribed CPU, 1 avoids OpenMP threads spinning while they wait for a descheduled peer")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    build_s = 0.0
    if args.model:
        folder = args.model.resolve()
    else:
        from tiny_hunyuan3d import full_config, tiny_config, write_shape_folder

        name = {"tiny": "hunyuan3d-dit-tiny", "2mini": "hunyuan3d-dit-v2-mini", "2.0": "hunyuan3d-dit-v2-0"}[args.random]
        base = args.out or Path(tempfile.mkdtemp(prefix="atelier-mesh-bench-"))
        folder = base / (name + ("-turbo" if args.turbo else ""))
        if not (folder / "model.fp16.safetensors").is_file():
            config = tiny_config(args.turbo) if args.random == "tiny" else full_config(args.random, args.turbo)
            started = time.perf_counter()
            write_shape_folder(folder, config)
            build_s = time.perf_counter() - started
            print(f"built random {args.random}{' turbo' if args.turbo else ''} in {build_s:.1f}s: {folder} "
                  f"({(folder / 'model.fp16.safetensors').stat().st_size / 1e9:.2f} GB)", flush=True)
    os.environ["ATELIER_MESH_MODEL"] = str(folder)
    os.environ["ATELIER_MESH_OCTREE_RESOLUTION"] = str(args.octree)
    os.environ["ATELIER_MESH_MAX_FACES"] = str(args.max_faces)
    if args.steps:
        os.environ["ATELIER_MESH_STEPS"] = str(args.steps)
    from models.settings import reset_settings

    reset_settings()
    from tools.backends.base import MeshRequest
    from tools.backends.hunyuan3d import Hunyuan3DBackend

    backend, image = Hunyuan3DBackend(), picture()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    first = backend.generate(MeshRequest(image=image, seed=0))[0]
    first_s = time.perf_counter() - started
    steady, last = [], first
    for i in range(args.repeat):
        started = time.perf_counter()
        last = backend.generate(MeshRequest(image=image, seed=i + 1))[0]
        steady.append(time.perf_counter() - started)
    md = last.metadata
    result = {
        "model": args.random and f"random {args.random}{' turbo' if args.turbo else ''}" or str(folder),
        "variant": md["variant"], "device": md["device"], "dtype": md["dtype"],
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu": f"{platform.processor() or platform.machine()} x{os.cpu_count()}", "torch_threads": torch.get_num_threads(),
        "octree_resolution": md["octree_resolution"], "steps": md["steps"], "faces": md["faces"], "raw_faces": md["raw_faces"],
        "watertight": md["watertight"], "build_s": round(build_s, 2), "load_s": first.metadata["seconds"]["load"],
        "first_call_s": round(first_s, 3), "steady_s_median": round(statistics.median(steady), 3) if steady else None,
        "steady_s_min": round(min(steady), 3) if steady else None, "steady_stages_s": md["seconds"],
        "surface_plus_simplify_s": round(md["seconds"]["surface_extraction"] + md["seconds"]["simplify"], 3),
        "surface": md.get("surface"),
        "load_average": [round(x, 2) for x in load_before] + [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": round(peak_rss_mb()), "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
        "glb_kb": round(len(last.data) / 1024),
    }
    for key, value in result.items():
        print(f"{key:>18s}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = all(a.metadata["watertight"] and a.metadata["faces"] <= args.max_faces for a in (first, last))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
