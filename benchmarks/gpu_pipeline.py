"""Text -> image -> 3D model through the two real learned backends in one process: build, load, first call, steady.

    python3 benchmarks/gpu_pipeline.py --out DIR                     # full-size random weights (SDXL-Turbo, 2mini turbo)
    python3 benchmarks/gpu_pipeline.py --out DIR --tiny              # the test suite's tiny models (CPU proof run)
    python3 benchmarks/gpu_pipeline.py --out DIR --image-model models/sdxl-turbo \\
        --mesh-model models/hunyuan3d-2mini/hunyuan3d-dit-v2-mini-turbo                # real folders
    # on the lent GPU machine (after `bash ../shared/gpu/prepare.sh fast-simplification==0.2.0` here, carry .gpu):
    source .gpu/env.sh && python3 benchmarks/gpu_pipeline.py --out $OUT

Built for one cold device call under 5 minutes: random folders are built with the existing builders
(benchmarks/image_backend.py build_random, tests/support/tiny_hunyuan3d.py), the two pipelines load at the same time
through the start-up warm-up (tools.backends.warm_up, what `atelier serve` runs), then one first creation and
--steady steady ones run text -> DiffusersBackend -> PNG -> Hunyuan3DBackend -> GLB. Every stage writes its JSON
under --out as soon as it is done (env, build, load, first_call, steady_N, summary, and with --compare hy3dgen's
surface path against ours on the same latents), so a run cut short by a timeout still returns what finished.
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
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_pipelines, tiny_hunyuan3d: the random-folder builders
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


def compare(octree: int, cuda: bool) -> dict:
    """hy3dgen's own post-diffusion path (its _export: FlashVDM decoding, scikit-image, trimesh) against ours
    (tools/backends/surface.py) on the same latents: seconds of each and how far apart the meshes are."""
    import io

    import numpy as np
    import torch
    from mesh_backend import picture
    from PIL import Image
    from scipy.spatial import cKDTree

    from tools.backends import hunyuan3d
    from tools.backends.marching_cubes import marching_cubes
    from tools.backends.surface import decode_volume, latents_to_mesh

    def sync():
        if cuda:
            torch.cuda.synchronize()

    pipe = hunyuan3d._loaded.pipeline
    matte = hunyuan3d.matte_subject(Image.open(io.BytesIO(picture())))
    generator = torch.Generator(device=hunyuan3d._loaded.device).manual_seed(7)
    latents = pipe(image=matte.rgba, num_inference_steps=5, guidance_scale=5.0, generator=generator, output_type="latent",
                   enable_pbar=False)
    timings: dict[str, list[float]] = {"ours_s": [], "hy3dgen_s": []}
    for _ in range(2):  # the second of each is the steady one
        sync()
        started = time.perf_counter()
        ours = latents_to_mesh(pipe, latents, octree_resolution=octree, num_chunks=20000, flashvdm=True)
        sync()
        timings["ours_s"].append(round(time.perf_counter() - started, 3))
        started = time.perf_counter()
        theirs = pipe._export(latents, "trimesh", 1.01, 0.0, 20000, octree, "mc", enable_pbar=False)[0]
        sync()
        timings["hy3dgen_s"].append(round(time.perf_counter() - started, 3))
    theirs_v = np.asarray(theirs.vertices)
    gap = max(cKDTree(theirs_v).query(ours.vertices)[0].max(), cKDTree(ours.vertices).query(theirs_v)[0].max())
    with torch.inference_mode():  # the torch marching cubes on the GPU grid against scikit-image on the same grid
        decoded = pipe.vae(1.0 / pipe.vae.scale_factor * latents)
        grid, _ = decode_volume(decoded, pipe.vae.geo_decoder, octree_resolution=octree)
        sync()
        started = time.perf_counter()
        gpu_v, gpu_f = marching_cubes(grid)
        gpu_s = time.perf_counter() - started
        started = time.perf_counter()
        cpu_v, cpu_f = marching_cubes(grid.cpu())
        cpu_s = time.perf_counter() - started
    return {**timings, "ours": ours.info, "faces_ours": int(len(ours.faces)), "faces_hy3dgen": int(len(theirs.faces)),
            "vertices_ours": int(len(ours.vertices)), "vertices_hy3dgen": int(len(theirs_v)),
            "max_vertex_gap": float(gap), "bbox_diagonal": float(np.linalg.norm(np.ptp(theirs_v, axis=0))),
            "marching_cubes": {"device": str(grid.device), "torch_s": round(gpu_s, 3), "skimage_s": round(cpu_s, 3),
                               "vertices": [int(len(gpu_v)), int(len(cpu_v))], "faces": [int(len(gpu_f)), int(len(cpu_f))]}}


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
    parser.add_argument("--compare", action="store_true", help="then hy3dgen's own surface path against ours on the same "
                        "latents (seconds, mesh gap), and the torch marching cubes against scikit-image on one grid")
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
    if args.compare:
        write(args.out, "compare", compare(args.octree, cuda))
    return 0 if summary["all_watertight"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
