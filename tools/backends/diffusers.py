"""`diffusers`: text -> image with a diffusers pipeline folder on this machine (SD-Turbo, SDXL, FLUX, Sana ...).

Which folder: models.registry.image_model_path() (ATELIER_IMAGE_MODEL, or the only pipeline folder in ./models).
With none, generate() fails in milliseconds with a reason saying what to do, before torch or diffusers is
imported, so the fallback to `sketch` costs nothing and keeps the reason.

One pipeline per process, loaded lazily under a lock and kept; calls are serialised by a second lock because
diffusers pipelines are not reentrant (schedulers keep per-call state). CUDA when present (fp16, bf16 for the
families trained in it; model CPU offload when free VRAM is short, attention slicing as a last resort), CPU
float32 otherwise. Every denoising step is reported through ProgressFn, so the studio's step and the CLI show it.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from models.registry import ModelMissing, image_model_path

from .base import MODEL_BUILD_LOCK, Backend, BackendError, GeneratedAsset, ImageRequest, ProgressFn, no_progress

log = logging.getLogger("atelier.backends.diffusers")

MIN_SIZE, MAX_SIZE = 64, 2048
MAX_STEPS = 200
GIB = 1024 ** 3


@dataclass(frozen=True)
class Family:
    """Defaults a model family was trained / distilled for; a run's steps and guidance override them."""
    name: str
    steps: int
    guidance: float
    native: int | None          # side (px) it was trained at; None = the pipeline's default sample size
    cuda_dtype: str = "float16"  # bfloat16 for families trained in it (fp16 overflows in FLUX / Sana)
    latent_patch: int = 1        # latents are packed / patched by this much: size multiple = vae_scale_factor * this
    max_sequence_length: int | None = None


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd-turbo", steps=1, guidance=0.0, native=512),
    Family("sdxl-turbo", steps=1, guidance=0.0, native=512),
    Family("sd", steps=25, guidance=7.5, native=None),  # SD 1.x 512, SD 2.x 768: read from the UNet config
    Family("sdxl", steps=30, guidance=5.0, native=1024),
    Family("sd3", steps=28, guidance=7.0, native=1024, latent_patch=2),
    Family("flux-schnell", steps=4, guidance=0.0, native=1024, cuda_dtype="bfloat16", latent_patch=2, max_sequence_length=256),
    Family("flux-dev", steps=28, guidance=3.5, native=1024, cuda_dtype="bfloat16", latent_patch=2, max_sequence_length=512),
    Family("sana-sprint", steps=2, guidance=4.5, native=1024, cuda_dtype="bfloat16"),
    Family("sana", steps=20, guidance=4.5, native=1024, cuda_dtype="bfloat16"),
    Family("other", steps=25, guidance=5.0, native=None),
)}

# pipeline class -> (family, family when the folder is a few-step distilled one: turbo / schnell)
PIPELINE_FAMILIES: dict[str, tuple[str, str | None]] = {
    "StableDiffusionPipeline": ("sd", "sd-turbo"),
    "StableDiffusionXLPipeline": ("sdxl", "sdxl-turbo"),
    "StableDiffusion3Pipeline": ("sd3", None),
    "FluxPipeline": ("flux-dev", "flux-schnell"),
    "SanaSprintPipeline": ("sana-sprint", None),
    "SanaPipeline": ("sana", None),
}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _is_distilled(folder: Path) -> bool:
    """Few-step distilled weights: the name says so (sd-turbo, sdxl-turbo, FLUX.1-schnell), SD/SDXL turbo schedulers
    space timesteps from the end ("trailing"), and FLUX schnell has no guidance embedding."""
    name = folder.resolve().name.lower()
    if "turbo" in name or "schnell" in name:
        return True
    if _read_json(folder / "scheduler" / "scheduler_config.json").get("timestep_spacing") == "trailing":
        return True
    return _read_json(folder / "transformer" / "config.json").get("guidance_embeds") is False


def detect_family(folder: Path) -> tuple[str, Family]:
    """(pipeline class name, family) from the folder's JSON files alone: no torch, no weights read."""
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name") or "")
    if not class_name:
        raise BackendError(f"{folder}/model_index.json is unreadable or names no pipeline class", transient=False, backend="diffusers")
    base, distilled = PIPELINE_FAMILIES.get(class_name, ("other", None))
    family = distilled if distilled and _is_distilled(folder) else base
    return class_name, FAMILIES[family]


def render_size(width: int, height: int, native: int | None, multiple: int) -> tuple[int, int]:
    """The size the pipeline renders at: the request's aspect ratio, rounded up to the size multiple the latents need,
    and scaled up to the family's native area when the request is under half of it (SDXL at 512² makes broken
    pictures; rendering at 1024² and scaling down does not)."""
    scale = 1.0
    if native and width * height < native * native / 2:
        scale = math.sqrt(native * native / (width * height))
    return (max(multiple, math.ceil(width * scale / multiple) * multiple),
            max(multiple, math.ceil(height * scale / multiple) * multiple))


def _validate(request: ImageRequest) -> None:
    for name in ("width", "height"):
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool) or not MIN_SIZE <= value <= MAX_SIZE:
            raise BackendError(f"{name} must be an integer between {MIN_SIZE} and {MAX_SIZE}, not {value!r}", transient=False, backend="diffusers")
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise BackendError("the prompt is empty", transient=False, backend="diffusers")
    if request.steps is not None and (not isinstance(request.steps, int) or not 1 <= request.steps <= MAX_STEPS):
        raise BackendError(f"steps must be an integer between 1 and {MAX_STEPS}, not {request.steps!r}", transient=False, backend="diffusers")
    if request.guidance is not None and (not isinstance(request.guidance, (int, float)) or not 0 <= request.guidance <= 30):
        raise BackendError(f"guidance must be a number between 0 and 30, not {request.guidance!r}", transient=False, backend="diffusers")
    if request.seed is not None and (not isinstance(request.seed, int) or not 0 <= request.seed < 2 ** 63):
        raise BackendError(f"seed must be an integer between 0 and 2**63-1, not {request.seed!r}", transient=False, backend="diffusers")


@dataclass
class LoadedPipeline:
    folder: Path
    pipe: Any
    class_name: str
    family: Family
    device: str           # where the denoiser runs: cuda | cpu
    dtype: str
    placement: str        # cpu | gpu | model_cpu_offload | model_cpu_offload+attention_slicing
    native: int | None
    multiple: int
    call_parameters: frozenset[str]
    load_seconds: float
    speedups: tuple[str, ...] = ()


def _module_bytes(pipe) -> list[int]:
    import torch

    sizes = []
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = list(component.parameters()) + list(component.buffers())
            sizes.append(sum(t.numel() * t.element_size() for t in tensors))
    return sizes or [0]


def _place(pipe, torch) -> str:
    """Put the pipeline where it fits: all on the GPU; else one component at a time (model CPU offload); else that
    plus attention slicing and VAE tiling, which trade speed for peak memory."""
    if not torch.cuda.is_available():
        pipe.to("cpu")
        return "cpu"
    free, _total = torch.cuda.mem_get_info()
    sizes = _module_bytes(pipe)
    weights, largest = sum(sizes), max(sizes)
    headroom = max(1.5 * GIB, 0.25 * weights)  # activations at ~1024²; measured peaks sit well inside this
    if weights + headroom <= free:
        pipe.to("cuda")
        return "gpu"
    pipe.enable_model_cpu_offload()
    if largest + headroom <= free:
        return "model_cpu_offload"
    _save_memory(pipe)
    return "model_cpu_offload+attention_slicing"


def _save_memory(pipe) -> None:
    pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()


def _default_side(pipe, vae_scale: int) -> int | None:
    """The side (px) the denoiser was configured for: its latent sample size times the VAE's scale factor."""
    sample = getattr(pipe, "default_sample_size", None)
    if not isinstance(sample, int):
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    return sample * vae_scale if isinstance(sample, int) else None


@contextlib.contextmanager
def _library_progress_bars_off():
    """diffusers' and transformers' own tqdm bars while loading would tear through the CLI's bar and the logs;
    the backend reports loading and each denoising step itself. Restored afterwards for other users."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    was = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in was:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in was:
            if enabled:
                lib.enable_progress_bar()


def _dtype_keyword() -> str:
    """diffusers 0.42 renamed from_pretrained's torch_dtype to dtype (the old name warns); older ones know only torch_dtype."""
    from diffusers import __version__
    from packaging.version import Version

    return "dtype" if Version(__version__) >= Version("0.42") else "torch_dtype"


SPEEDUPS = ("channels_last", "fused_qkv", "compile")


def _speedups() -> list[str]:
    from tools.settings import get_settings

    wanted = get_settings().image_speedup_list
    unknown = [w for w in wanted if w not in SPEEDUPS]
    if unknown:
        raise BackendError(f"ATELIER_IMAGE_SPEEDUPS: unknown {', '.join(unknown)} (known: {', '.join(SPEEDUPS)})",
                           transient=False, backend="diffusers")
    return wanted


def _apply_speedups(pipe, wanted: list[str], torch) -> list[str]:
    """What the field uses for SD/SDXL-class pipelines, each only where the pipeline has the part it needs:
    channels_last memory format for the convolutional denoiser and VAE, fused QKV projections in attention,
    torch.compile of the denoiser (compiled by the warm-up call in _load, so the first creation does not pay it)."""
    done = []
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if "channels_last" in wanted and getattr(pipe, "unet", None) is not None:
        pipe.unet.to(memory_format=torch.channels_last)
        if getattr(pipe, "vae", None) is not None:
            pipe.vae.to(memory_format=torch.channels_last)
        done.append("channels_last")
    if "fused_qkv" in wanted and callable(getattr(pipe, "fuse_qkv_projections", None)):
        pipe.fuse_qkv_projections()
        done.append("fused_qkv")
    if "compile" in wanted and denoiser is not None:
        compiled = torch.compile(denoiser, fullgraph=False)
        if getattr(pipe, "unet", None) is not None:
            pipe.unet = compiled
        else:
            pipe.transformer = compiled
        done.append("compile")
    return done


def _has_variant(folder: Path, variant: str) -> bool:
    return any(folder.glob(f"*/*.{variant}.safetensors")) or any(folder.glob(f"*/*.{variant}-*.safetensors"))


def _has_plain_weights(folder: Path) -> bool:
    """Any component saved without a variant suffix (diffusion_pytorch_model.safetensors, model.safetensors …)."""
    return any(".fp16" not in p.name for p in folder.glob("*/*.safetensors")) or any(folder.glob("*/*.bin"))


class DiffusersBackend(Backend):
    name: ClassVar[str] = "diffusers"
    kind: ClassVar[Literal["image"]] = "image"
    label: ClassVar[str] = "the local diffusers model"
    supports_size: ClassVar[bool] = True
    supports_seed: ClassVar[bool] = True
    supports_steps: ClassVar[bool] = True
    supports_negative_prompt: ClassVar[bool] = True  # passed when the pipeline takes one
    prefers_gpu: ClassVar[bool] = True  # CUDA when present; distilled models (SD-Turbo) are usable on a CPU
    learned: ClassVar[bool] = True

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._loaded: LoadedPipeline | None = None

    # -- loading ----------------------------------------------------------------------------------------------
    def warm_up(self) -> str:
        """Load the pipeline now (tools.backends.warm_up calls this in a background thread); a creation that starts
        meanwhile waits for this load under the same lock. Without a model: returns at once, nothing imported."""
        try:
            folder = image_model_path()
        except ModelMissing:
            return "no model"
        self.pipeline(folder)
        return f"loaded {folder.name}"

    def pipeline(self, folder: Path, progress: ProgressFn = no_progress) -> LoadedPipeline:
        """The process's pipeline for `folder`, loaded on first use; a different folder replaces it (one per process)."""
        folder = folder.resolve()
        if self._load_lock.locked() and (self._loaded is None or self._loaded.folder != folder):
            progress(None, f"warming up: {folder.name} is loading …")
        with self._load_lock:
            if self._loaded is not None and self._loaded.folder == folder:
                return self._loaded
            with self._call_lock:  # never swap a pipeline out from under a running call
                self._unload()
                self._loaded = self._load(folder, progress)
            return self._loaded

    def _unload(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _load(self, folder: Path, progress: ProgressFn) -> LoadedPipeline:
        class_name, family = detect_family(folder)
        progress(None, f"loading {folder.name} ({class_name}, {family.name}) …")
        started = time.perf_counter()
        try:
            import torch
            from diffusers import AutoPipelineForText2Image, DiffusionPipeline
        except ImportError as exc:
            raise BackendError(f"diffusers/torch are not importable ({exc}); run `make setup`", transient=False, backend=self.name) from exc
        cuda = torch.cuda.is_available()
        if cuda:
            dtype = getattr(torch, family.cuda_dtype)
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                dtype = torch.float16
        else:
            dtype = torch.float32  # CPU half precision is slow or unsupported for most kernels
        kwargs: dict[str, Any] = {_dtype_keyword(): dtype, "local_files_only": True}
        if _has_variant(folder, "fp16") and ((cuda and dtype is torch.float16) or not _has_plain_weights(folder)):
            # half the bytes read from disk on CUDA; and the only weights of an fp16-only folder (what
            # `atelier models pull` fetches), cast to float32 on CPU
            kwargs["variant"] = "fp16"
        try:
            with _library_progress_bars_off(), MODEL_BUILD_LOCK:
                try:
                    pipe = AutoPipelineForText2Image.from_pretrained(str(folder), **kwargs)
                except ValueError as exc:
                    if "can't find a pipeline" not in str(exc):
                        raise
                    # Not in AutoPipeline's text-to-image table (e.g. SanaSprintPipeline): the folder's own class.
                    pipe = DiffusionPipeline.from_pretrained(str(folder), **kwargs)
            if "prompt" not in inspect.signature(pipe.__call__).parameters:
                raise BackendError(f"{folder.name}: {type(pipe).__name__} does not take a text prompt", transient=False, backend=self.name)
            pipe.set_progress_bar_config(disable=True)
            placement = _place(pipe, torch)
            speedups = _apply_speedups(pipe, _speedups(), torch)
        except BackendError:
            raise
        except Exception as exc:  # a broken or partial folder: say which and why, once
            raise BackendError(f"could not load the diffusers pipeline in {folder}: {exc.__class__.__name__}: {exc}",
                               transient=False, backend=self.name) from exc
        vae_scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        native = family.native or _default_side(pipe, vae_scale)
        loaded = LoadedPipeline(folder=folder, pipe=pipe, class_name=type(pipe).__name__, family=family,
                                device="cuda" if cuda else "cpu", dtype=str(dtype).removeprefix("torch."), placement=placement,
                                native=native, multiple=vae_scale * family.latent_patch,
                                call_parameters=frozenset(inspect.signature(pipe.__call__).parameters),
                                load_seconds=0.0, speedups=tuple(speedups))
        if "compile" in speedups:  # compile now, at load (warm-up), with the family's native size and steps
            side = native or 512
            progress(None, f"compiling {folder.name}'s denoiser (once per process) …")
            pipe(prompt="warm-up", num_inference_steps=1, guidance_scale=family.guidance, width=side, height=side,
                 output_type="latent", **({"max_sequence_length": family.max_sequence_length}
                                          if family.max_sequence_length and "max_sequence_length" in loaded.call_parameters else {}))
        loaded.load_seconds = round(time.perf_counter() - started, 3)
        log.info("diffusers loaded model=%s pipeline=%s family=%s device=%s dtype=%s placement=%s speedups=%s seconds=%.2f",
                 folder.name, loaded.class_name, family.name, loaded.device, loaded.dtype, placement,
                 ",".join(speedups) or "none", loaded.load_seconds)
        progress(None, f"loaded {folder.name} in {loaded.load_seconds:.1f} s ({loaded.device}, {loaded.dtype})")
        return loaded

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, request: ImageRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        _validate(request)
        try:
            folder = image_model_path()
        except ModelMissing as exc:  # the usual case without a GPU setup: fast, and the reason is kept
            raise BackendError(str(exc), transient=False, backend=self.name) from None
        while True:
            loaded = self.pipeline(folder, progress)
            with self._call_lock:
                if self._loaded is loaded:  # else a request for another folder replaced it while this one waited
                    return [self._run(loaded, request, progress)]

    def _run(self, loaded: LoadedPipeline, request: ImageRequest, progress: ProgressFn) -> GeneratedAsset:
        import torch

        family = loaded.family
        steps = request.steps or family.steps
        guidance = float(family.guidance if request.guidance is None else request.guidance)
        seed = request.seed if request.seed is not None else secrets.randbelow(2 ** 31)  # recorded: reproducible
        width, height = render_size(request.width, request.height, loaded.native, loaded.multiple)

        def on_step_end(pipe, step: int, _timestep, callback_kwargs: dict) -> dict:
            total = getattr(pipe, "num_timesteps", None) or steps  # multi-order schedulers run more than `steps`
            progress(min(1.0, (step + 1) / total), f"denoising step {step + 1}/{total}")
            return callback_kwargs

        kwargs: dict[str, Any] = {"width": width, "height": height, "num_inference_steps": steps, "guidance_scale": guidance,
                                  "generator": torch.Generator(device=loaded.device).manual_seed(seed), "output_type": "pil",
                                  "callback_on_step_end": on_step_end, "negative_prompt": request.negative_prompt,
                                  "max_sequence_length": family.max_sequence_length}
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k in loaded.call_parameters}
        started = time.perf_counter()
        try:
            image = self._call(loaded, request.prompt, kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            raise BackendError(f"out of GPU memory at {width}x{height} even with attention slicing: {exc}", backend=self.name) from exc
        seconds = round(time.perf_counter() - started, 3)
        if image.size != (request.width, request.height):  # rounded or scaled to what the latents allow: back to the request
            image = ImageOps.fit(image.convert("RGB"), (request.width, request.height), Image.Resampling.LANCZOS)
        metadata = {"is_sketch": False, "generator": f"diffusers:{loaded.class_name}", "model": loaded.folder.name,
                    "model_path": str(loaded.folder), "pipeline": loaded.class_name, "family": family.name, "steps": steps,
                    "guidance": guidance, "seed": seed, "device": loaded.device, "dtype": loaded.dtype,
                    "placement": loaded.placement, "seconds": seconds, "width": request.width, "height": request.height,
                    "render_size": [width, height], "negative_prompt": "negative_prompt" in kwargs,
                    "speedups": list(loaded.speedups)}
        info = PngInfo()
        info.add_text("atelier:generator", metadata["generator"])
        info.add_text("atelier:model", loaded.folder.name)
        info.add_text("atelier:seed", str(seed))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", pnginfo=info)
        log.info("diffusers image model=%s family=%s size=%dx%d render=%dx%d steps=%d seed=%d device=%s seconds=%.2f",
                 loaded.folder.name, family.name, request.width, request.height, width, height, steps, seed, loaded.device, seconds)
        return GeneratedAsset(kind="image", data=buffer.getvalue(), mime="image/png", backend=self.name, metadata=metadata)

    def _call(self, loaded: LoadedPipeline, prompt: str, kwargs: dict[str, Any]) -> Image.Image:
        import torch

        try:
            return loaded.pipe(prompt=prompt, **kwargs).images[0]
        except torch.cuda.OutOfMemoryError:
            if loaded.placement.endswith("attention_slicing"):
                raise
            # Last resort: slice attention and tile the VAE, keep that for later calls, try once more.
            torch.cuda.empty_cache()
            _save_memory(loaded.pipe)
            loaded.placement += "+attention_slicing"
            log.warning("diffusers out of GPU memory model=%s: retrying with attention slicing", loaded.folder.name)
            generator = kwargs.get("generator")
            if generator is not None:  # the failed call advanced it: start again from the seed, same picture
                generator.manual_seed(generator.initial_seed())
            return loaded.pipe(prompt=prompt, **kwargs).images[0]


def register_backends(register) -> None:
    register(DiffusersBackend)
