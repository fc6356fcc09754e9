"""`hunyuan3d`: learned image -> 3D with Tencent's Hunyuan3D-2 shape model through `hy3dgen` (PyPI, pure Python).

Weights are the user's choice and never fetched: a shape folder (config.yaml + model.fp16.safetensors, e.g.
hunyuan3d-dit-v2-mini-turbo/ from tencent/Hunyuan3D-2mini) in ./models or named by ATELIER_MESH_MODEL
(models/registry.py: mesh_model_path). Without one, generate() fails in milliseconds, before torch or hy3dgen
is imported, with the exact instruction, and the fallback runner moves on (to relief by default).

One call: matte the subject (rembg when its weights are in ./models, else a border-colour matte) -> the flow-
matching DiT (progress per step) -> the ShapeVAE's volume decoder + marching cubes (surface.py: hy3dgen's FlashVDM
decoding, batched and tracked along the surface; marching_cubes.py) -> clean-up (duplicate and degenerate faces,
floaters, as hy3dgen's FloaterRemover) and quadric decimation to the face budget (simplify.py, fast-simplification)
-> holes filled and normals made outward (trimesh) -> colours
projected from the picture onto the vertices -> binary GLB with vertex colours.

Colour: an orthographic projection along the view axis (hy3dgen's meshes are Y-up with the picture's view
looking down -Z, the glTF convention), the mesh's X/Y extent fitted to the silhouette's bounding box. Every
vertex takes the colour at its projected point, so the back shows the front mirrored through the object (as the
relief backend does): one picture says nothing about the back, and a mirrored projection has no seams and no
smeared patches, which a nearest-visible-colour fill has. The picture is first extended past the silhouette
with the nearest subject colour, so vertices on the rim never pick up background.

Licence: the Hunyuan3D-2 weights are under the Tencent Hunyuan 3D community licence, which does not cover the
EU, the UK or South Korea (docs/local-generation.md).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from models.registry import MESH_WEIGHT_FILES, ModelMissing, background_remover_path, mesh_model_path

from .base import MODEL_BUILD_LOCK, Backend, BackendError, GeneratedAsset, MeshRequest, ProgressFn, no_progress
from .simplify import clean_and_simplify
from .surface import latents_to_mesh

# scipy, the relief module's decoder, torch, hy3dgen, fast-simplification and trimesh are imported where they are used: with
# no mesh model in ./models, an attempt must cost milliseconds, not the seconds those imports take.

log = logging.getLogger("atelier.backends")

GENERATOR = "atelier-hunyuan3d-v1"
MAX_MATTE_SIDE = 1024  # the preprocessor resizes to 512 anyway; matting a smaller copy keeps big inputs quick


@dataclass(frozen=True)
class Variant:
    name: str
    steps: int
    guidance_scale: float
    num_chunks: int  # query points per decoder call: memory vs. speed
    flashvdm: bool  # hierarchical FlashVDM volume decoding (what the turbo checkpoints are distilled for)


# From the hy3dgen examples for each checkpoint family (turbo: 5 steps + FlashVDM; fast: guidance-distilled,
# one DiT pass per step; standard: 30 steps). Any of them can be overridden by settings (mesh_steps ...).
VARIANTS = {
    "turbo": Variant("turbo", steps=5, guidance_scale=5.0, num_chunks=20000, flashvdm=True),
    "fast": Variant("fast", steps=30, guidance_scale=5.0, num_chunks=20000, flashvdm=False),
    "standard": Variant("standard", steps=30, guidance_scale=5.0, num_chunks=8000, flashvdm=False),
}
OCTREE_RESOLUTION = {"cuda": 256, "cpu": 128}  # marching-cubes grid; 128^3 decodes in tens of seconds on a CPU


def variant_of(folder: Path) -> Variant:
    name = folder.name.lower()
    return VARIANTS["turbo" if "turbo" in name else "fast" if "fast" in name else "standard"]


@dataclass(frozen=True)
class Options:
    max_faces: int
    steps: int | None
    octree_resolution: int | None
    num_chunks: int | None


def _options() -> Options:
    from tools.settings import get_settings

    s = get_settings()
    return Options(s.mesh_max_faces, s.mesh_steps, s.mesh_octree_resolution, s.mesh_num_chunks)


# ---------------------------------------------------------------------------------------------- matting

@dataclass
class Matte:
    rgba: Image.Image  # the subject on a transparent background: what hy3dgen's preprocessor recentres
    mask: np.ndarray  # bool (H, W), the same size as rgba
    source: str  # alpha | rembg | border | whole-image


def border_matte(rgb: np.ndarray) -> np.ndarray | None:
    """Foreground of a picture on a plain background: pixels unlike the border's median colour, where the
    background is what is connected to the border (so background-coloured parts inside the subject stay).
    None when that is degenerate (no subject, or no background)."""
    from scipy import ndimage

    h, w, _ = rgb.shape
    band = max(1, min(h, w) // 50)
    border = np.concatenate([rgb[:band].reshape(-1, 3), rgb[-band:].reshape(-1, 3),
                             rgb[:, :band].reshape(-1, 3), rgb[:, -band:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    spread = float(np.percentile(np.linalg.norm(border - background, axis=1), 95))  # noise / gradient on the border
    threshold = max(0.10, 2.5 * spread)
    near = np.linalg.norm(rgb - background, axis=2) < threshold
    labels, _ = ndimage.label(near)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fg = ~np.isin(labels, edge_labels[edge_labels > 0])
    # morphological clean-up: specks and one-pixel bridges out, small gaps closed, holes filled
    fg = ndimage.binary_opening(fg, iterations=2)
    fg = ndimage.binary_closing(fg, iterations=2)
    fg = ndimage.binary_fill_holes(fg)
    parts, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, parts, index=np.arange(1, n + 1))
        fg = np.isin(parts, np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1)
    fraction = float(fg.mean())
    return fg if 0.005 <= fraction <= 0.97 else None


def _rembg_mask(img: Image.Image) -> np.ndarray | None:
    """hy3dgen's BackgroundRemover (rembg u2net), only when models/rembg/u2net.onnx is there (rembg would
    otherwise download it). Any failure (rembg not installed, a different file) -> None: the border matte."""
    weights = background_remover_path()
    if weights is None:
        return None
    import os

    os.environ.setdefault("U2NET_HOME", str(weights.parent))
    try:
        from hy3dgen.rembg import BackgroundRemover

        out = BackgroundRemover()(img.convert("RGB"))
        alpha = np.asarray(out.convert("RGBA"))[..., 3] > 127
    except Exception as exc:  # noqa: BLE001 - an optional helper; the border matte is the fallback
        log.warning("hunyuan3d: rembg background removal failed (%s: %s); using the border matte", type(exc).__name__, exc)
        return None
    return alpha if 0.005 <= alpha.mean() <= 0.97 else None


def matte_subject(img: Image.Image) -> Matte:
    """The subject as RGBA: the picture's own alpha, else rembg, else the border matte, else the whole picture."""
    from scipy import ndimage

    if max(img.size) > MAX_MATTE_SIDE:
        img = img.copy()
        img.thumbnail((MAX_MATTE_SIDE, MAX_MATTE_SIDE), Image.Resampling.LANCZOS)
    arr = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    rgb = arr[..., :3]
    mask, source = None, ""
    if img.mode == "RGBA" and (arr[..., 3] < 250).mean() > 0.005:
        alpha_mask = arr[..., 3] > 127
        if 0.005 <= alpha_mask.mean() <= 0.97:
            mask, source = alpha_mask, "alpha"
    if mask is None and (found := _rembg_mask(img)) is not None:
        mask, source = found, "rembg"
    if mask is None and (found := border_matte(rgb.astype(np.float32) / 255.0)) is not None:
        mask, source = found, "border"
    if mask is None:
        mask, source = np.ones(rgb.shape[:2], bool), "whole-image"
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8) if source != "whole-image" else mask.astype(np.float32)
    alpha = np.clip(np.maximum(soft, mask * 1.0) * 255, 0, 255).astype(np.uint8)
    return Matte(rgba=Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), mask=mask, source=source)


# ---------------------------------------------------------------------------------------------- the pipeline

@dataclass
class LoadedPipeline:
    pipeline: Any
    folder: Path
    variant: Variant
    device: str
    dtype: str
    transforms: str  # "torchvision" or "stand-in" (tools/backends/_torchvision_standin.py)
    vae: str  # "checkpoint" or the turbo VAE folder used with FlashVDM
    seconds: float


_pipeline_lock = threading.Lock()  # one generation at a time: the pipeline and its decoder keep per-call state
_loaded: LoadedPipeline | None = None


def _check_local_only(config_path: Path) -> None:
    """hy3dgen's image encoders call from_pretrained(version) when config.yaml names a hub model instead of
    embedding its config: that would fetch. Atelier loads local files only."""
    import yaml

    config = yaml.safe_load(config_path.read_text())
    params = (config.get("conditioner") or {}).get("params") or {}
    for key, encoder in params.items():
        kwargs = (encoder.get("kwargs") or {}) if isinstance(encoder, dict) else {}
        if kwargs.get("config") is None and kwargs.get("version") and not Path(str(kwargs["version"])).is_dir():
            raise BackendError(f"hunyuan3d: {config_path} asks for the image encoder '{kwargs['version']}' from the model hub "
                               f"({key}); Atelier never downloads at run time: use the published config.yaml, which "
                               f"embeds the encoder's config", transient=False, backend="hunyuan3d")


def _weights_in(folder: Path) -> Path | None:
    return next((folder / n for n in MESH_WEIGHT_FILES if (folder / n).is_file()), None)


def _turbo_vae_folder(folder: Path) -> Path | None:
    """The FlashVDM-distilled VAE published next to a turbo DiT (hunyuan3d-vae-v2-mini-turbo/ ...), if present."""
    siblings = sorted(p for p in folder.parent.iterdir() if p.is_dir() and p.name.startswith("hunyuan3d-vae")
                      and "turbo" in p.name and (p / "config.yaml").is_file() and _weights_in(p) is not None)
    return siblings[0] if siblings else None


def load_pipeline(folder: Path) -> LoadedPipeline:
    """The process's one pipeline for `folder`, loaded on first use (call with _pipeline_lock held)."""
    global _loaded
    if _loaded is not None and _loaded.folder == folder:
        return _loaded
    started = time.perf_counter()
    _loaded = None  # a different folder replaces the old pipeline; never two in memory
    import torch

    from ._torchvision_standin import conditioner_module

    _, transforms = conditioner_module()  # before hy3dgen.shapegen: its conditioner needs torchvision.transforms
    from hy3dgen.shapegen import Hunyuan3DDiTFlowMatchingPipeline
    from hy3dgen.shapegen.models.autoencoders import ShapeVAE

    # hy3dgen's logger prints every load step at INFO through its own handler; our one line below says it all
    logging.getLogger("hy3dgen.shapgen").setLevel(logging.WARNING)

    config, weights = folder / "config.yaml", _weights_in(folder)
    if weights is None:
        raise BackendError(f"hunyuan3d: no weights in {folder} ({' / '.join(MESH_WEIGHT_FILES)})", transient=False, backend="hunyuan3d")
    _check_local_only(config)
    device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.float32)
    with MODEL_BUILD_LOCK:
        pipeline = Hunyuan3DDiTFlowMatchingPipeline.from_single_file(
            str(weights), str(config), device=device, dtype=dtype, use_safetensors=weights.suffix == ".safetensors")
    variant = variant_of(folder)
    vae = "checkpoint"
    if variant.flashvdm:
        # pipeline.enable_flashvdm() would look the turbo VAE up on the hub: load the local one, when present, here
        if (vae_folder := _turbo_vae_folder(folder)) is not None:
            vae_weights = _weights_in(vae_folder)
            with MODEL_BUILD_LOCK:
                pipeline.vae = ShapeVAE.from_single_file(str(vae_weights), str(vae_folder / "config.yaml"), device=device,
                                                         dtype=dtype, use_safetensors=vae_weights.suffix == ".safetensors")
            vae = vae_folder.name
        # marching cubes from scikit-image ('mc'); 'dmc' needs diso, a CUDA extension that is not a dependency
        pipeline.vae.enable_flashvdm_decoder(enabled=True, adaptive_kv_selection=True, topk_mode="mean", mc_algo="mc")
    if device == "cuda":  # the GPU marching cubes' case table, built once here rather than in the first creation
        from .marching_cubes import case_table

        case_table()
    _loaded = LoadedPipeline(pipeline, folder, variant, device, str(dtype).replace("torch.", ""), transforms, vae,
                             time.perf_counter() - started)
    log.info("hunyuan3d loaded folder=%s variant=%s device=%s dtype=%s transforms=%s vae=%s seconds=%.2f", folder,
             variant.name, device, _loaded.dtype, transforms, vae, _loaded.seconds)
    return _loaded


# ---------------------------------------------------------------------------------------------- mesh work

def close_mesh(vertices: np.ndarray, faces: np.ndarray):
    """A trimesh with merged vertices, holes filled, consistent outward winding; and whether it is watertight."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    mesh.remove_unreferenced_vertices()
    filled = 0
    if not mesh.is_watertight:
        before = len(mesh.faces)
        trimesh.repair.fill_holes(mesh)
        filled = len(mesh.faces) - before
    trimesh.repair.fix_normals(mesh)  # consistent winding, outward (positive volume) for a closed mesh
    return mesh, bool(mesh.is_watertight), filled


def project_colours(vertices: np.ndarray, matte: Matte) -> np.ndarray:
    """RGBA uint8 per vertex: orthographic projection along Z into the matted picture (see the module docstring)."""
    from scipy import ndimage

    rgb = np.asarray(matte.rgba.convert("RGB"), dtype=np.float32)
    mask = matte.mask
    # beyond the silhouette, the nearest subject pixel's colour: rim vertices never sample the background
    _, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
    extended = rgb[iy, ix]
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    vx, vy = vertices[:, 0], vertices[:, 1]
    u = (vx - vx.min()) / max(float(np.ptp(vx)), 1e-9)  # 0 at the mesh's left (-X), 1 at its right
    v = (vy.max() - vy) / max(float(np.ptp(vy)), 1e-9)  # 0 at the top (+Y): image rows grow downwards
    cols, rows = x0 + u * (x1 - x0), y0 + v * (y1 - y0)
    colours = np.stack([ndimage.map_coordinates(extended[..., c], [rows, cols], order=1, mode="nearest") for c in range(3)], 1)
    return np.concatenate([np.clip(colours, 0, 255), np.full((len(vertices), 1), 255.0)], 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- the backend

class Hunyuan3DBackend(Backend):
    """Image -> 3D with a Hunyuan3D-2 shape model from ./models: a watertight, vertex-coloured GLB."""

    name: ClassVar[str] = "hunyuan3d"
    kind: ClassVar[Literal["model"]] = "model"
    label: ClassVar[str] = "the local Hunyuan3D model"
    supports_seed: ClassVar[bool] = True
    needs_gpu: ClassVar[bool] = True  # runs on a CPU, but a shape takes minutes there
    prefers_gpu: ClassVar[bool] = True
    learned: ClassVar[bool] = True

    def __init__(self, kind: str = "model"):
        if kind != "model":
            raise BackendError(f"hunyuan3d does not make {kind}s", transient=False, backend=self.name)

    @classmethod
    def prepare_main_thread(cls) -> None:
        """Import pymeshlab (hy3dgen.shapegen imports it) in the calling, main thread when a mesh model is there:
        imported first in another thread, its Qt libraries corrupt the C heap at process exit (glibc aborts:
        "malloc_consolidate(): unaligned fastbin chunk detected"; reproduced with a bare import in a thread)."""
        try:
            mesh_model_path()
        except ModelMissing:
            return
        try:
            import pymeshlab  # noqa: F401
        except ImportError:  # the load will say what is missing
            pass

    def warm_up(self) -> str:
        """Load the pipeline now (tools.backends.warm_up calls this in a background thread); a creation that
        starts meanwhile waits for this load under the same lock instead of loading again. Without a model:
        returns at once, nothing imported."""
        try:
            folder = mesh_model_path()
        except ModelMissing:
            return "no model"
        with _pipeline_lock:
            load_pipeline(folder)
        return f"loaded {folder.name}"

    def generate(self, request: MeshRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        try:
            folder = mesh_model_path()  # directory listings only: no torch, no hy3dgen until a model is there
        except ModelMissing as exc:
            raise BackendError(str(exc), transient=False, backend=self.name) from None
        if not isinstance(request.image, (bytes, bytearray, memoryview)):
            raise BackendError(f"image could not be decoded: expected bytes, got {type(request.image).__name__}",
                               transient=False, backend=self.name)
        from .relief import decode_image

        try:
            img = decode_image(bytes(request.image))
        except BackendError as exc:
            exc.backend = self.name
            raise
        options = _options()
        stages: dict[str, float] = {}
        started = t = time.perf_counter()
        call = secrets.token_hex(4)  # ties this call's stage lines together (the tool's step line has the creation)

        def stage_done(name: str, since: float) -> float:
            now = time.perf_counter()
            stages[name] = now - since
            log.info("step=mesh_stage backend=%s call=%s stage=%s seconds=%.3f", self.name, call, name, stages[name])
            return now

        progress(0.02, "hunyuan3d: separating the subject from the background")
        matte = matte_subject(img)
        t = stage_done("matte", t)

        import torch

        if _loaded is None or _loaded.folder != folder:
            progress(0.05, f"hunyuan3d: {'warming up' if _pipeline_lock.locked() else 'loading'} {folder.name} "
                           f"(once per process)")
        with _pipeline_lock:
            loaded = load_pipeline(folder)
            t = stage_done("load", t)
            variant = loaded.variant
            steps = options.steps or variant.steps
            octree = options.octree_resolution or OCTREE_RESOLUTION[loaded.device]
            num_chunks = options.num_chunks or variant.num_chunks
            seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
            generator = torch.Generator(device=loaded.device).manual_seed(int(seed))

            def on_step(index: int, _timestep, _outputs) -> None:
                progress(0.08 + 0.62 * (index + 1) / steps, f"hunyuan3d: shape diffusion step {index + 1}/{steps}")

            try:
                latents = loaded.pipeline(image=matte.rgba, num_inference_steps=steps, guidance_scale=variant.guidance_scale,
                                          generator=generator, octree_resolution=octree, num_chunks=num_chunks,
                                          output_type="latent", enable_pbar=False, callback=on_step, callback_steps=1)
                t = stage_done("shape", t)
                progress(0.72, f"hunyuan3d: decoding the volume at {octree}^3 and extracting the surface")
                surface_mesh = latents_to_mesh(loaded.pipeline, latents, octree_resolution=octree, num_chunks=num_chunks,
                                               flashvdm=variant.flashvdm)
            except torch.OutOfMemoryError as exc:
                raise BackendError(f"hunyuan3d: out of {loaded.device} memory at octree resolution {octree} "
                                   f"(lower ATELIER_MESH_OCTREE_RESOLUTION or ATELIER_MESH_NUM_CHUNKS): {exc}",
                                   backend=self.name) from exc
            t = stage_done("surface_extraction", t)
        if len(surface_mesh.faces) == 0:
            raise BackendError("hunyuan3d: the shape model's field never crossed the surface level, so there is no surface "
                               "(for real weights this means the picture gave it nothing to build)", backend=self.name)

        progress(0.75, f"hunyuan3d: cleaning up and simplifying {len(surface_mesh.faces)} faces to at most {options.max_faces}")
        vertices, faces, clean_info = clean_and_simplify(surface_mesh.vertices, surface_mesh.faces, options.max_faces)
        mesh, watertight, holes_filled = close_mesh(vertices, faces)
        if len(mesh.faces) > options.max_faces:
            raise BackendError(f"hunyuan3d: simplification left {len(mesh.faces)} faces, over the budget of "
                               f"{options.max_faces}", transient=False, backend=self.name)
        t = stage_done("simplify", t)

        progress(0.88, "hunyuan3d: projecting the picture's colours onto the mesh")
        import trimesh

        mesh.visual = trimesh.visual.ColorVisuals(mesh=mesh, vertex_colors=project_colours(np.asarray(mesh.vertices), matte))
        t = stage_done("colour", t)

        progress(0.94, "hunyuan3d: exporting GLB")
        scene = trimesh.Scene()
        scene.add_geometry(mesh, geom_name="hunyuan3d", node_name="hunyuan3d")
        data = scene.export(file_type="glb", include_normals=True)
        if not isinstance(data, (bytes, bytearray)) or data[:4] != b"glTF":
            raise BackendError("hunyuan3d: GLB export produced no glTF binary", transient=False, backend=self.name)
        stage_done("export", t)
        total = time.perf_counter() - started
        metadata = {
            "generator": GENERATOR,
            "model_folder": str(folder),
            "variant": variant.name,
            "steps": int(steps),
            "guidance_scale": variant.guidance_scale,
            "seed": int(seed),
            "octree_resolution": int(octree),
            "num_chunks": int(num_chunks),
            "flashvdm": variant.flashvdm,
            "vae": loaded.vae,
            "device": loaded.device,
            "dtype": loaded.dtype,
            "transforms": loaded.transforms,
            "matte": matte.source,
            "faces": int(len(mesh.faces)),
            "vertices": int(len(mesh.vertices)),
            "max_faces": int(options.max_faces),
            "watertight": watertight,
            "holes_filled_faces": int(holes_filled),
            **clean_info,
            "surface": surface_mesh.info,
            "colour": "vertex colours, orthographic front projection (back mirrored)",
            "seconds": {k: round(v, 3) for k, v in stages.items()} | {"total": round(total, 3)},
            "extents": [round(float(e), 4) for e in mesh.extents],
            "licence": "Tencent Hunyuan 3D community licence (not licensed in the EU, the UK or South Korea)",
        }
        log.info("hunyuan3d mesh variant=%s device=%s steps=%d octree=%d faces=%d watertight=%s seconds=%.2f stages=%s",
                 variant.name, loaded.device, steps, octree, metadata["faces"], watertight, total,
                 " ".join(f"{k}:{v:.2f}" for k, v in stages.items()))
        progress(1.0, f"hunyuan3d ready: {metadata['faces']} faces{'' if watertight else ' (not watertight)'}")
        return [GeneratedAsset(kind="model", data=bytes(data), mime="model/gltf-binary", backend=self.name, metadata=metadata)]


def register_backends(register) -> None:
    register(Hunyuan3DBackend)
