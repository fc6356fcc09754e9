"""Time the `diffusers` image backend on a pipeline folder: load, first call, steady state, peak RSS / VRAM.

    .venv/bin/python benchmarks/image_backend.py FOLDER [--size 512x512] [--steps N] [--repeat 3]
    .venv/bin/python benchmarks/image_backend.py --random sd-turbo [--size 512x512] [--work DIR]
    .venv/bin/python benchmarks/image_backend.py --random sdxl-turbo
    .venv/bin/python benchmarks/image_backend.py --random tiny      # the test suite's tiny SD pipeline

FOLDER is any diffusers text-to-image pipeline folder (model_index.json). --random builds a full-size
random-weight architecture from the configs below (weights do not change the time), saves it in fp16 with
save_pretrained under --work (a temp dir by default) and times that, so a GPU box can be measured without
downloading weights. The timed path is the real one: DiffusersBackend loads the folder with
from_pretrained(local_files_only=True) and runs it, on CUDA when torch sees a GPU, else on the CPU.

Prints one JSON object (and a readable table on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))  # tiny_pipelines: the tokenizer files and the tiny pipeline
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# -- full-size architectures (config values as published with the models; weights random) --------------------
# SD-Turbo is SD 2.1 (base, 512²) distilled: SD 2.x UNet, SD VAE, OpenCLIP ViT-H/14 text encoder (23 layers used).
SD2_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32)
OPENCLIP_H_TEXT = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                       hidden_act="gelu", projection_dim=512, vocab_size=49408, max_position_embeddings=77)
# SDXL-Turbo is SDXL 1.0 distilled: SDXL UNet (text_time conditioning), CLIP ViT-L + OpenCLIP ViT-bigG encoders.
SDXL_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, norm_num_groups=32)
CLIP_L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                   hidden_act="quick_gelu", projection_dim=768, vocab_size=49408, max_position_embeddings=77)
OPENCLIP_BIGG_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                          hidden_act="gelu", projection_dim=1280, vocab_size=49408, max_position_embeddings=77)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
              sample_size=512)
TURBO_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1)

ARCHES = ("sd-turbo", "sdxl-turbo", "tiny")


def build_random(arch: str, folder: Path) -> Path:
    """Save a random-weight pipeline of `arch` into `folder` (fp16 files, as the published fp16 variants)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tiny_pipelines import BOS_ID, EOS_ID, save_tiny_sd, tiny_tokenizer

    if arch == "tiny":
        return save_tiny_sd(folder, turbo=True)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # random init of ~1-3 B parameters is much faster there
    tokens = dict(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID)
    with torch.device(device):
        if arch == "sd-turbo":
            pipe = StableDiffusionPipeline(vae=AutoencoderKL(**SD_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**OPENCLIP_H_TEXT, **tokens)),
                                           tokenizer=tiny_tokenizer(folder / "_tok"), unet=UNet2DConditionModel(**SD2_UNET),
                                           scheduler=EulerDiscreteScheduler(**TURBO_SCHEDULER), safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
        else:
            pipe = StableDiffusionXLPipeline(vae=AutoencoderKL(**SD_VAE, force_upcast=False),
                                             text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **tokens)),
                                             text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG_TEXT, **tokens)),
                                             tokenizer=tiny_tokenizer(folder / "_tok"), tokenizer_2=tiny_tokenizer(folder / "_tok"),
                                             unet=UNet2DConditionModel(**SDXL_UNET),
                                             scheduler=EulerDiscreteScheduler(**TURBO_SCHEDULER), force_zeros_for_empty_prompt=True)
    pipe.to(torch.float16)
    pipe.save_pretrained(folder)
    shutil.rmtree(folder / "_tok", ignore_errors=True)
    del pipe
    return folder


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(folder: Path, width: int, height: int, steps: int | None, repeat: int) -> dict:
    import torch

    from models.settings import reset_settings
    from tools.backends.base import ImageRequest
    from tools.backends.diffusers import DiffusersBackend

    os.environ["ATELIER_IMAGE_MODEL"] = str(folder)
    reset_settings()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    backend = DiffusersBackend()
    started = time.perf_counter()
    loaded = backend.pipeline(folder)
    load_s = time.perf_counter() - started
    request = dict(prompt="a lighthouse on a cliff at sunset, oil painting", width=width, height=height, steps=steps)

    def one(seed: int) -> tuple[float, dict]:
        began = time.perf_counter()
        asset = backend.generate(ImageRequest(**request, seed=seed))[0]
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - began, asset.metadata

    first_s, md = one(0)
    steady = [one(seed)[0] for seed in range(1, repeat + 1)]
    return {
        "folder": str(folder), "pipeline": loaded.class_name, "family": loaded.family.name, "device": loaded.device,
        "dtype": loaded.dtype, "placement": loaded.placement, "size": f"{width}x{height}", "render_size": md["render_size"],
        "steps": md["steps"], "guidance": md["guidance"], "load_s": round(load_s, 3), "first_call_s": round(first_s, 3),
        "steady_s": round(statistics.median(steady), 3) if steady else None, "steady_runs": [round(s, 3) for s in steady],
        "peak_rss_mb": round(_rss_peak_mb()), "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="a diffusers pipeline folder (model_index.json)")
    parser.add_argument("--random", choices=ARCHES, help="build a random-weight pipeline of this architecture and time it")
    parser.add_argument("--work", type=Path, help="where --random saves its folder (kept); default a temp dir, removed")
    parser.add_argument("--size", default="512x512", help="WxH (default 512x512)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the family's)")
    parser.add_argument("--repeat", type=int, default=3, help="steady-state calls after the first (default 3)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the child that builds --random
    args = parser.parse_args()
    if bool(args.folder) == bool(args.random):
        parser.error("give a pipeline FOLDER or --random ARCH (one of them)")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 512x512, not {args.size!r}")
    if args.folder and not (args.folder / "model_index.json").is_file():
        parser.error(f"{args.folder} has no model_index.json: not a diffusers pipeline folder")

    temp = None
    folder = args.folder
    build_s = None
    if args.random:
        if args.work:
            folder = args.work / f"random-{args.random}"
        else:
            temp = Path(tempfile.mkdtemp(prefix="atelier-bench-"))
            folder = temp / f"random-{args.random}"
        if args.build_only:
            build_random(args.random, folder)
            return 0
        if not (folder / "model_index.json").is_file():
            # Built in a child process, so the building does not count in this process's peak RSS / VRAM.
            began = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--random", args.random, "--work", str(folder.parent), "--build-only"], check=True)
            build_s = round(time.perf_counter() - began, 1)
    try:
        result = measure(folder, width, height, args.steps, args.repeat)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    result.update({"random": args.random, "build_s": build_s})
    print(f"{result['pipeline']} ({result['family']}) on {result['gpu'] or result['cpu']} {result['dtype']} {result['placement']}: "
          f"{result['size']} x {result['steps']} steps  load {result['load_s']:.2f}s  first {result['first_call_s']:.2f}s  "
          f"steady {result['steady_s']}s  peak RSS {result['peak_rss_mb']} MB  peak VRAM {result['peak_vram_mb']} MB", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
