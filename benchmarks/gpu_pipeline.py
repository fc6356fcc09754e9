"""Text -> image -> 3D model through the two real learned backends in one process: build, load, first call, steady.

    python3 benchmarks/gpu_pipeline.py --out DIR                     # full-size random weights (SDXL-Turbo, 2mini turbo)
    python3 benchmarks/gpu_pipeline.py --out DIR --tiny              # the test suite's tiny models (CPU proof run)
    python3 benchmarks/gpu_pipeline.py --out DIR --image-model models/sdxl-turbo \\
        --mesh-model models/hunyuan3d-2mini/hunyuan3d-dit-v2-mini-turbo                # real folders
    # on the lent GPU machine (after `bash ../shared/gpu/prepare.sh fast-simplification==0.2.0` here, carry .gpu):
    source .gpu/env.sh && python3 benchmarks/gpu_pipeline.py --out $OUT

Built for one cold device call under 5 minutes: random folders are built with the existing builders
(benchmarks/image_backend.py build_random, tests/tiny_hunyuan3d.py), the two pipelines load at the same time
through the start-up warm-up (tools.backends.warm_up, what `atelier serve` runs), then one first creation and
--steady steady ones run text -> DiffusersBackend -> PNG -> Hunyuan3DBackend -> GLB. Every stage writes its JSON
under --out as soon as it is done (env, build, load, first_call, steady_N, summary), so a run cut short by a
timeout still returns what finished.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_pipelines, tiny_hunyuan3d: the random-folder builders
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROMPT = "a red ceramic teapot with a blue lid, studio photo, plain background"


def write(out: Path, name: str, data: dict) -> dict:
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    print(f"[{name}] {json.dumps(data, default=str)}", flush=True)
    return data


def build(args, work: Path, out: Path) -> tuple[Path, Path]:
    """The image and mesh folders: given ones, or random ones built now (timed)."""
    from image_backend import build_random

    times: dict[str, float] = {}
    image = args.image_model
    if image is None:
        image = work / f"random-{args.image_arch}"
        if not (image / "model_index.json").is_file():
            started = time.perf_counter()
            build_random(args.image_arch, image)
            times["image_build_s"] = round(time.perf_counter() - started, 2)
    mesh = args.mesh_model
    if mesh is None:
        from tiny_hunyuan3d import full_config, tiny_config, write_shape_folder

        mesh = work / f"hunyuan3d-dit-{args.mesh_arch}-turbo"
        if not (mesh / "model.fp16.safetensors").is_file():
            started = time.perf_counter()
            config = tiny_config(turbo=True) if args.mesh_arch == "tiny" else full_config(args.mesh_arch, turbo=True)
            write_shape_folder(mesh, config)
            times["mesh_build_s"] = round(time.perf_counter() - started, 2)
    write(out, "build", {"image_model": str(image), "mesh_model": str(mesh), **times})
    return image.resolve(), mesh.resolve()


def creation(image_backend, mesh_backend, seed: int, cuda: bool) -> dict:
    """One text -> image -> mesh creation: seconds per stage (the mesh backend's own stage breakdown included)."""
    import torch

    from tools.backends.base import ImageRequest, MeshRequest

    started = time.perf_counter()
    picture = image_backend.generate(ImageRequest(prompt=PROMPT, width=512, height=512, seed=seed))[0]
    if cuda:
        torch.cuda.synchronize()
    image_s = time.perf_counter() - started
    model = mesh_backend.generate(MeshRequest(image=picture.data, seed=seed))[0]
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - started
    md = model.metadata
    return {"seed": seed, "image_s": round(image_s, 3), "mesh_s": round(total - image_s, 3), "total_s": round(total, 3),
            "mesh_stages_s": md["seconds"], "surface": md.get("surface"), "faces": md["faces"], "raw_faces": md["raw_faces"],
            "watertight": md["watertight"], "glb_kb": round(len(model.data) / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where each stage's JSON is written as it finishes")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny image and mesh models (a CPU proof run)")
    parser.add_argument("--image-model", type=Path, help="a diffusers pipeline folder (default: random full-size weights)")
    parser.add_argument("--mesh-model", type=Path, help="a Hunyuan3D shape folder (default: random full-size weights)")
    parser.add_argument("--image-arch", default="sdxl-turbo", choices=("sdxl-turbo", "sd-turbo", "tiny"))
    parser.add_argument("--mesh-arch", default="2mini", choices=("2mini", "2.0", "tiny"))
    parser.add_argument("--work", type=Path, help="where random folders are built (kept; reused when present)")
    parser.add_argument("--octree", type=int, default=256)
    parser.add_argument("--max-faces", type=int, default=40000)
    parser.add_argument("--steady", type=int, default=5, help="steady creations after the first")
    args = parser.parse_args()
    if args.tiny:
        args.image_arch, args.mesh_arch = "tiny", "tiny"
    args.out.mkdir(parents=True, exist_ok=True)
    started_all = time.perf_counter()

    import torch

    cuda = torch.cuda.is_available()
    write(args.out, "env", {"gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
                            "cpu": f"{platform.processor() or platform.machine()} x{os.cpu_count()}",
                            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
                            "python": platform.python_version(), "tiny": args.tiny})
    work = args.work or Path(tempfile.mkdtemp(prefix="atelier-gpu-pipeline-"))
    image_folder, mesh_folder = build(args, work, args.out)

    os.environ.update({"ATELIER_IMAGE_MODEL": str(image_folder), "ATELIER_MESH_MODEL": str(mesh_folder),
                       "ATELIER_IMAGE_BACKENDS": "diffusers", "ATELIER_MODEL_BACKENDS": "hunyuan3d",
                       "ATELIER_MESH_OCTREE_RESOLUTION": str(args.octree), "ATELIER_MESH_MAX_FACES": str(args.max_faces),
                       "ATELIER_WARM_UP": "true"})
    from models.settings import reset_settings

    reset_settings()
    from tools.backends import load_backend, warm_up

    # the two pipelines at once, through the start-up warm-up `atelier serve` and the studio use
    started = time.perf_counter()
    entries = warm_up()
    for entry in entries.values():
        entry.thread.join()
    write(args.out, "load", {"wall_s": round(time.perf_counter() - started, 2),
                             **{k: {"state": e.state, "seconds": round(e.seconds, 2), "detail": e.detail} for k, e in entries.items()},
                             "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else None})
    if any(e.state != "ready" for e in entries.values()):
        return 1
    image_backend, mesh_backend = load_backend("diffusers", "image"), load_backend("hunyuan3d", "model")

    first = write(args.out, "first_call", creation(image_backend, mesh_backend, 0, cuda))
    steady = []
    for i in range(args.steady):
        steady.append(write(args.out, f"steady_{i + 1}", creation(image_backend, mesh_backend, i + 1, cuda)))
    summary = {"first_call_s": first["total_s"], "since_start_s": round(time.perf_counter() - started_all, 1)}
    if steady:
        for key in ("image_s", "mesh_s", "total_s"):
            summary[f"steady_{key}_median"] = round(statistics.median(s[key] for s in steady), 3)
        for stage in steady[-1]["mesh_stages_s"]:
            summary[f"steady_mesh_{stage}_s_median"] = round(statistics.median(s["mesh_stages_s"][stage] for s in steady), 3)
    summary["peak_vram_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else None
    summary["all_watertight"] = all(s["watertight"] for s in [first, *steady])
    write(args.out, "summary", summary)
    return 0 if summary["all_watertight"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
