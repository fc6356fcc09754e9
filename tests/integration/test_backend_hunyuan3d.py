"""The `hunyuan3d` mesh backend, for real: tiny random-weight Hunyuan3D-2 shape folders built from hy3dgen's own
classes (tests/support/tiny_hunyuan3d.py), loaded and run by the real backend through hy3dgen. No mocks of the model."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image, ImageDraw

from models.settings import reset_settings
from tools.backends import generate_with_fallback
from tools.backends._torchvision_standin import CenterCrop, Compose, Normalize, Resize, conditioner_module
from tools.backends.base import BackendError, MeshRequest
from tools.backends.hunyuan3d import Hunyuan3DBackend, border_matte, matte_subject
from tools.settings import ToolSettings

from tiny_hunyuan3d import tiny_config, write_shape_folder

ROOT = Path(__file__).resolve().parents[2]
OCTREE = 32  # 33^3 decoder queries: a second or two on a CPU
BUDGET = 1500  # below the ~4000 faces a radius-0.67 sphere gives at this resolution: simplification must run


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _glb_mesh(data: bytes) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    # the layout `atelier models pull` leaves: a repository folder holding the shape folder(s)
    write_shape_folder(root / "hunyuan3d-2mini" / "hunyuan3d-dit-v2-mini", tiny_config(turbo=False), seed=0)
    write_shape_folder(root / "hunyuan3d-2mini" / "hunyuan3d-dit-v2-mini-turbo", tiny_config(turbo=True), seed=1)
    return root


@pytest.fixture
def mesh_env(models_dir, monkeypatch):
    monkeypatch.setenv("ATELIER_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("ATELIER_MESH_MODEL", "hunyuan3d-2mini/hunyuan3d-dit-v2-mini")
    monkeypatch.setenv("ATELIER_MESH_OCTREE_RESOLUTION", str(OCTREE))
    monkeypatch.setenv("ATELIER_MESH_STEPS", "3")
    monkeypatch.setenv("ATELIER_MESH_MAX_FACES", str(BUDGET))
    reset_settings()
    yield models_dir
    reset_settings()


def _quadrants() -> Image.Image:
    """A square subject on white: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    img = Image.new("RGB", (192, 192), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for (x0, y0), colour in (((40, 40), (220, 20, 20)), ((96, 40), (20, 200, 20)), ((40, 96), (20, 20, 220)),
                             ((96, 96), (230, 210, 20))):
        d.rectangle((x0, y0, x0 + 55, y0 + 55), fill=colour)
    return img


# ------------------------------------------------------------------ the torchvision stand-in

def test_standin_normalize_and_center_crop_match_hand_computed_values():
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(1, 2, 4, 5)
    out = Normalize(mean=[1.0, 2.0], std=[2.0, 4.0])(x)
    assert out[0, 0, 0, 0].item() == pytest.approx((0 - 1) / 2) and out[0, 1, 3, 4].item() == pytest.approx((39 - 2) / 4)
    # 4x5 -> 2x2: top = round((4-2)/2) = 1, left = round((5-2)/2) = round(1.5) = 2 (torchvision's rounding)
    crop = CenterCrop(2)(x)
    assert crop.shape == (1, 2, 2, 2)
    assert crop[0, 0].tolist() == [[7.0, 8.0], [12.0, 13.0]]
    padded = CenterCrop(6)(torch.ones(1, 1, 4, 4))  # smaller than the crop: zero padding around it
    assert padded.shape == (1, 1, 6, 6) and padded.sum().item() == 16 and padded[0, 0, 0].sum().item() == 0


def test_standin_resize_matches_pils_antialiased_bilinear():
    rng = np.random.default_rng(3)
    plane = rng.random((12, 9), dtype=np.float32)
    x = torch.from_numpy(plane)[None, None]
    out = Resize(6, antialias=True)(x)  # shorter side 9 -> 6, longer int(6 * 12 / 9) = 8
    assert out.shape == (1, 1, 8, 6)
    pil = np.asarray(Image.fromarray(plane, mode="F").resize((6, 8), Image.Resampling.BILINEAR))
    assert np.abs(out[0, 0].numpy() - pil).max() < 2e-3
    chain = Compose([Resize(6), CenterCrop(6), Normalize([0.5], [0.25])])(x)
    assert torch.allclose(chain, (out[..., 1:7, :] - 0.5) / 0.25)


def test_standin_is_used_only_for_hy3dgens_conditioner():
    module, which = conditioner_module()
    try:
        import torchvision  # noqa: F401
        real = True
    except Exception:
        real = False
    if real:
        assert which == "torchvision"
        return
    assert which == "stand-in" and getattr(module.transforms, "ATELIER_STANDIN", False)
    assert "torchvision" not in sys.modules and "torchvision.transforms" not in sys.modules
    from diffusers.utils import is_torchvision_available as diffusers_sees
    from transformers.utils import is_torchvision_available as transformers_sees

    assert not diffusers_sees() and not transformers_sees()


# ------------------------------------------------------------------ matting

def test_border_matte_removes_a_uniform_background():
    img = Image.new("RGB", (160, 120), (90, 140, 200))
    d = ImageDraw.Draw(img)
    d.ellipse((50, 30, 110, 90), fill=(240, 200, 40))
    d.ellipse((72, 52, 88, 68), fill=(90, 140, 200))  # background colour inside the subject: stays subject
    truth = np.zeros((120, 160), bool)
    yy, xx = np.mgrid[0:120, 0:160]
    truth[((xx - 80) / 30.0) ** 2 + ((yy - 60) / 30.0) ** 2 <= 1.0] = True
    mask = border_matte(np.asarray(img, np.float32) / 255.0)
    assert mask is not None
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.93, iou
    matte = matte_subject(img)
    alpha = np.asarray(matte.rgba)[..., 3]
    assert matte.source == "border" and matte.rgba.mode == "RGBA"
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0 and alpha[60, 80] == 255 and alpha[40, 80] == 255


def test_matte_prefers_the_pictures_alpha_and_falls_back_to_the_whole_picture():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((16, 16, 47, 47), fill=(10, 200, 10, 255))
    assert matte_subject(rgba).source == "alpha"
    flat = Image.new("RGB", (64, 64), (128, 128, 128))
    assert matte_subject(flat).source == "whole-image"


# ------------------------------------------------------------------ the backend, end to end

def test_real_pipeline_gives_a_watertight_glb_within_the_budget_coloured_from_the_picture(mesh_env):
    img = Image.new("RGB", (200, 200), (255, 255, 255))
    ImageDraw.Draw(img).ellipse((50, 40, 150, 160), fill=(220, 20, 20))
    events: list[tuple[float | None, str]] = []
    asset = Hunyuan3DBackend().generate(MeshRequest(image=_png(img), seed=5), lambda f, m: events.append((f, m)))[0]

    assert asset.backend == "hunyuan3d" and asset.mime == "model/gltf-binary" and asset.data[:4] == b"glTF"
    mesh = _glb_mesh(asset.data)
    md = asset.metadata
    assert mesh.is_watertight and md["watertight"] is True
    assert len(mesh.faces) <= BUDGET and md["faces"] == len(mesh.faces) and md["simplified"] is True
    assert md["raw_faces"] > BUDGET  # the budget really cut something
    assert mesh.volume > 0  # closed and outward
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
    assert colours[:, 0].mean() > 180 and colours[:, 1].mean() < 60 and colours[:, 2].mean() < 60  # red, from the picture
    for key, value in {"variant": "standard", "steps": 3, "seed": 5, "octree_resolution": OCTREE, "device": "cpu",
                       "dtype": "float32", "matte": "border", "max_faces": BUDGET}.items():
        assert md[key] == value, key
    assert md["model_folder"].endswith("hunyuan3d-dit-v2-mini") and md["vertices"] == len(mesh.vertices)
    assert set(md["seconds"]) >= {"matte", "load", "shape", "surface_extraction", "simplify", "colour", "export", "total"}
    steps = [m for _, m in events if "diffusion step" in m]
    assert steps == [f"hunyuan3d: shape diffusion step {i}/3" for i in (1, 2, 3)]
    fractions = [f for f, _ in events if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_colours_land_where_the_picture_has_them(mesh_env):
    """Image right is +X, image up is +Y: each quadrant of the mesh takes the colour of the same quadrant."""
    asset = Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants()), seed=1))[0]
    mesh = _glb_mesh(asset.data)
    v = np.asarray(mesh.vertices) - mesh.bounds.mean(axis=0)
    c = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(int)
    margin = 0.15 * np.ptp(v[:, 0])  # away from the colour boundaries
    expected = {(-1, 1): (220, 20, 20), (1, 1): (20, 200, 20), (-1, -1): (20, 20, 220), (1, -1): (230, 210, 20)}
    for (sx, sy), colour in expected.items():
        sel = (sx * v[:, 0] > margin) & (sy * v[:, 1] > margin)
        assert sel.sum() > 20
        close = (np.abs(c[sel] - np.array(colour)).max(axis=1) < 40).mean()
        assert close > 0.9, ((sx, sy), close)


def test_same_seed_same_mesh_and_another_seed_another(mesh_env):
    backend = Hunyuan3DBackend()
    picture = _png(_quadrants())
    a = _glb_mesh(backend.generate(MeshRequest(image=picture, seed=11))[0].data)
    b = _glb_mesh(backend.generate(MeshRequest(image=picture, seed=11))[0].data)
    c = _glb_mesh(backend.generate(MeshRequest(image=picture, seed=12))[0].data)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


def test_turbo_folder_runs_five_steps_with_flashvdm_decoding(mesh_env, monkeypatch):
    monkeypatch.setenv("ATELIER_MESH_MODEL", str(mesh_env / "hunyuan3d-2mini" / "hunyuan3d-dit-v2-mini-turbo"))
    monkeypatch.delenv("ATELIER_MESH_STEPS")
    reset_settings()
    events: list[str] = []
    asset = Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants()), seed=2), lambda f, m: events.append(m))[0]
    md = asset.metadata
    assert md["variant"] == "turbo" and md["flashvdm"] is True and md["steps"] == 5
    assert sum("diffusion step" in m for m in events) == 5
    mesh = _glb_mesh(asset.data)
    assert mesh.is_watertight and len(mesh.faces) <= BUDGET


# ------------------------------------------------------------------ bad input, missing model, fallback order

def test_undecodable_picture_is_a_clear_non_transient_error(mesh_env):
    with pytest.raises(BackendError) as info:
        Hunyuan3DBackend().generate(MeshRequest(image=b"not a picture"))
    assert info.value.backend == "hunyuan3d" and not info.value.transient
    assert "could not be decoded" in str(info.value)


def test_a_named_model_that_is_not_there_says_so(mesh_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_MESH_MODEL", str(tmp_path / "nowhere"))
    reset_settings()
    with pytest.raises(BackendError, match="ATELIER_MESH_MODEL=.*nowhere is neither a folder"):
        Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants())))
    monkeypatch.setenv("ATELIER_MESH_MODEL", str(mesh_env / "hunyuan3d-2mini"))  # two shape folders inside: name one
    reset_settings()
    with pytest.raises(BackendError, match="holds 2 shape folders"):
        Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants())))


def test_a_config_that_would_fetch_the_image_encoder_is_refused(mesh_env, monkeypatch, tmp_path):
    import yaml

    folder = tmp_path / "hunyuan3d-dit-v2-mini-hub"
    folder.mkdir()
    source = mesh_env / "hunyuan3d-2mini" / "hunyuan3d-dit-v2-mini"
    config = yaml.safe_load((source / "config.yaml").read_text())
    config["conditioner"]["params"]["main_image_encoder"]["kwargs"] = {"version": "facebook/dinov2-giant", "image_size": 56}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "model.fp16.safetensors").symlink_to(source / "model.fp16.safetensors")
    monkeypatch.setenv("ATELIER_MESH_MODEL", str(folder))
    reset_settings()
    with pytest.raises(BackendError, match="never downloads at run time"):
        Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants())))


def test_without_a_mesh_model_the_attempt_is_fast_clear_and_relief_is_used(tmp_path):
    """In a fresh process, so 'torch was never imported' means something. What a running Atelier has loaded
    before any creation (settings, numpy, Pillow) is imported first; the attempt then includes importing the
    backend module and looking for the model."""
    empty = tmp_path / "models"
    empty.mkdir()
    script = (
        "import json, sys, io\n"
        "import numpy, tools.settings\n"
        "from PIL import Image\n"
        "from tools.backends import generate_with_fallback\n"
        "from tools.backends.base import MeshRequest\n"
        "buf = io.BytesIO(); Image.new('RGB', (64, 64), (200, 30, 30)).save(buf, 'PNG')\n"
        "assets, attempts = generate_with_fallback('model', ['hunyuan3d', 'relief'], MeshRequest(image=buf.getvalue()))\n"
        "from tools.backends import warm_up\n"
        "entries = warm_up()\n"
        "[e.thread.join(30) for e in entries.values()]\n"
        "print(json.dumps({'backend': assets[0].backend, 'attempts': [a.__dict__ for a in attempts],\n"
        "                  'warm_up': {k: [e.state, e.detail, e.seconds] for k, e in entries.items()},\n"
        "                  'torch': 'torch' in sys.modules, 'hy3dgen': any(m.startswith('hy3dgen') for m in sys.modules)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_MODELS_DIR": str(empty), "ATELIER_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT),
                "ATELIER_LOG_LEVEL": "ERROR"})
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    first, second = result["attempts"]
    assert result["backend"] == "relief" and second["ok"]
    assert first["backend"] == "hunyuan3d" and not first["ok"] and first["seconds"] < 0.5
    assert "no Hunyuan3D shape model" in first["reason"] and "atelier models pull hunyuan3d-2mini" in first["reason"]
    assert "ATELIER_MESH_MODEL" in first["reason"] and "South Korea" in first["reason"]
    # the start-up warm-up finds no model either: skipped in milliseconds, nothing heavy imported
    warm = result["warm_up"]
    assert warm["hunyuan3d:model"][:2] == ["skipped", "no model"] and warm["diffusers:image"][:2] == ["skipped", "no model"]
    assert all(seconds < 0.5 for _, _, seconds in warm.values())
    assert not result["torch"] and not result["hy3dgen"]


def test_default_order_tries_the_learned_mesh_backend_before_relief(monkeypatch):
    monkeypatch.delenv("ATELIER_MODEL_BACKENDS", raising=False)
    assert ToolSettings(_env_file=None).model_backend_list == ["openfabric", "hunyuan3d", "relief"]


def test_fallback_runner_uses_hunyuan3d_when_its_model_is_there(mesh_env):
    assets, attempts = generate_with_fallback("model", ["hunyuan3d", "relief"], MeshRequest(image=_png(_quadrants()), seed=3))
    assert [a.backend for a in attempts] == ["hunyuan3d"] and attempts[0].ok
    assert assets[0].backend == "hunyuan3d" and assets[0].metadata["watertight"]


# ------------------------------------------------------------------ surface extraction: the same surface, faster

def _turbo_latents(models_dir: Path, seed: int = 4):
    """The tiny turbo pipeline's decoded latents (after the VAE's transformer) for a picture."""
    from tools.backends.hunyuan3d import _pipeline_lock, load_pipeline, matte_subject

    with _pipeline_lock:
        loaded = load_pipeline(models_dir / "hunyuan3d-2mini" / "hunyuan3d-dit-v2-mini-turbo")
    pipe = loaded.pipeline
    latents = pipe(image=matte_subject(_quadrants()).rgba, num_inference_steps=2, guidance_scale=5.0,
                   generator=torch.Generator().manual_seed(seed), output_type="latent", enable_pbar=False)
    return pipe, latents


def test_flashvdm_decoding_gives_hy3dgens_grid_and_mesh_on_the_same_latents(models_dir):
    """Our batched FlashVDM decoder against hy3dgen's own (FlashVDMVolumeDecoding, 'mean' top-k), octree 128
    (levels 63 and 126): without tracking the same decoded points and values; with tracking (what the backend
    runs) fewer points decoded and the same marching-cubes mesh."""
    from hy3dgen.shapegen.models.autoencoders.volume_decoders import FlashVDMVolumeDecoding
    from hy3dgen.shapegen.pipelines import export_to_trimesh

    from tools.backends.surface import decode_volume, latents_to_mesh

    pipe, latents = _turbo_latents(models_dir)
    vae = pipe.vae
    octree = 128
    with torch.inference_mode():
        decoded = vae(1.0 / vae.scale_factor * latents)
        theirs = FlashVDMVolumeDecoding("mean")(decoded, vae.geo_decoder, bounds=1.01, num_chunks=20000, mc_level=0.0,
                                                octree_resolution=octree, enable_pbar=False)[0]
        full, full_stats = decode_volume(decoded, vae.geo_decoder, octree_resolution=octree, track=False)
        tracked, stats = decode_volume(decoded, vae.geo_decoder, octree_resolution=octree)
        vae.enable_flashvdm_decoder(enabled=True, adaptive_kv_selection=True, topk_mode="mean", mc_algo="mc")
        their_mesh = export_to_trimesh(vae.latents2mesh(decoded, bounds=1.01, mc_level=0.0, num_chunks=20000,
                                                        octree_resolution=octree, enable_pbar=False))[0]
    assert stats.resolutions == [63, 126] and full.shape == theirs.shape == (127, 127, 127)
    decoded_theirs = ~torch.isnan(theirs)
    assert torch.equal(decoded_theirs, ~torch.isnan(full))
    assert torch.allclose(full[decoded_theirs], theirs[decoded_theirs], atol=1e-5, rtol=0)
    assert ((theirs[decoded_theirs] > 0).sum() > 1000) and ((theirs[decoded_theirs] < 0).sum() > 1000)  # a real surface
    assert full_stats.band_points == stats.band_points and stats.decoded[-1] < 0.7 * stats.band_points[-1]

    ours = latents_to_mesh(pipe, latents, octree_resolution=octree, num_chunks=20000, flashvdm=True)
    assert ours.info["volume_decoder"] == "flashvdm-tracked" and ours.info["decoded_points"] < ours.info["flashvdm_points"]
    theirs_v = np.asarray(their_mesh.vertices)
    assert len(ours.faces) == len(their_mesh.faces) > 5000 and ours.vertices.shape == theirs_v.shape
    assert np.abs(np.sort(ours.vertices, axis=0) - np.sort(theirs_v, axis=0)).max() < 1e-5
    assert trimesh.Trimesh(ours.vertices, ours.faces, process=False).is_watertight


class _FieldDecoder:
    """A stand-in geometry decoder with an analytic field (for shapes the tiny model cannot make): what
    decode_volume needs of hy3dgen's CrossAttentionDecoder (the processor hook, forward(queries, latents)).
    Its attention processor is installed and removed but never called."""

    def __init__(self, field):
        self.field = field
        self.cross_attn_decoder = type("Block", (), {})()
        self.cross_attn_decoder.attn = type("Attn", (), {})()
        self.cross_attn_decoder.attn.attention = type("QKV", (), {"attn_processor": "default"})()

    def set_cross_attention_processor(self, processor):
        self.cross_attn_decoder.attn.attention.attn_processor = processor

    def __call__(self, queries, latents):
        return self.field(queries)[..., None]


def _two_blobs_and_a_ring(p):
    """A sphere, a small sphere off to the side and a thin torus: several components, one of them thin."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    sphere = 0.45 - torch.sqrt((x + 0.3) ** 2 + y ** 2 + z ** 2)
    small = 0.12 - torch.sqrt((x - 0.6) ** 2 + (y - 0.5) ** 2 + z ** 2)
    ring = 0.04 - torch.sqrt((torch.sqrt((x - 0.45) ** 2 + y ** 2) - 0.3) ** 2 + (z + 0.3) ** 2)
    return torch.tanh(8 * torch.maximum(torch.maximum(sphere, small), ring))


def test_tracking_finds_every_surface_the_coarser_level_saw():
    """Several components, one thin: the tracked finest level gives the same mesh as decoding the whole band."""
    from tools.backends.surface import decode_volume, extract_surface

    decoder, latents = _FieldDecoder(_two_blobs_and_a_ring), torch.zeros(1, 4, 8)
    full, _ = decode_volume(latents, decoder, octree_resolution=256, track=False)
    tracked, stats = decode_volume(latents, decoder, octree_resolution=256)
    assert stats.tracking_rounds >= 1 and stats.decoded[-1] < stats.band_points[-1]
    assert decoder.cross_attn_decoder.attn.attention.attn_processor == "default"  # put back
    v_full, f_full = extract_surface(full, octree_resolution=256)
    v_tracked, f_tracked = extract_surface(tracked, octree_resolution=256)
    parts = trimesh.Trimesh(v_tracked, f_tracked).split(only_watertight=False)
    assert len(parts) == 3 and all(p.is_watertight for p in parts)
    assert len(f_tracked) == len(f_full) and v_tracked.shape == v_full.shape
    assert np.abs(np.sort(v_tracked, axis=0) - np.sort(v_full, axis=0)).max() < 1e-6


def test_a_field_that_never_crosses_gives_no_faces_and_a_clear_error_upstream():
    """No surface anywhere (the coarse level sees no crossing): an empty mesh, which the backend reports as "never
    crossed the surface level", not a scikit-image exception."""
    from tools.backends.surface import decode_volume, extract_surface

    grid, stats = decode_volume(torch.zeros(1, 4, 8), _FieldDecoder(lambda p: -1 - p[..., 0] ** 2), octree_resolution=128)
    assert stats.tracking_rounds == 0 and torch.isnan(grid).all()
    vertices, faces = extract_surface(grid, octree_resolution=128)
    assert len(vertices) == 0 and len(faces) == 0


def _symmetric_hausdorff(a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = 20000, dense: int = 1_000_000) -> float:
    """max over both directions of the distance from points of one surface (its vertices + area samples) to the
    other, measured against a dense sampling of the other (an overestimate by at most the sample spacing)."""
    from scipy.spatial import cKDTree

    worst = 0.0
    for src, dst in ((a, b), (b, a)):
        points = np.concatenate([np.asarray(src.vertices)[::max(1, len(src.vertices) // samples)],
                                 trimesh.sample.sample_surface(src, samples, seed=0)[0]])
        targets = np.concatenate([np.asarray(dst.vertices), trimesh.sample.sample_surface(dst, dense, seed=1)[0]])
        worst = max(worst, float(cKDTree(targets).query(points)[0].max()))
    return worst


def test_simplification_keeps_the_mesh_closed_and_the_shape():
    """A marching-cubes mesh with a hole through it and a floater, 6.7x decimated (the benchmark's 268k -> 40k
    ratio): within the budget, watertight, no floater, and within 0.5 % of the bounding-box diagonal of the raw
    surface both ways (symmetric Hausdorff)."""
    from skimage import measure

    from tools.backends.hunyuan3d import close_mesh
    from tools.backends.simplify import clean_and_simplify

    n = 120
    axis = np.linspace(-1, 1, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    torus = 0.18 - np.sqrt((np.sqrt(x ** 2 + y ** 2) - 0.55) ** 2 + z ** 2)
    bump = 0.25 - np.sqrt(x ** 2 + (y - 0.55) ** 2 + (z - 0.15) ** 2)
    speck = 0.03 - np.sqrt((x - 0.9) ** 2 + (y - 0.9) ** 2 + (z - 0.9) ** 2)  # a floater: under 0.5 % of the faces
    verts, faces, _, _ = measure.marching_cubes(np.maximum(np.maximum(torus, bump), speck), 0.0)
    raw = trimesh.Trimesh(verts, faces)
    assert raw.is_watertight and len(raw.split(only_watertight=False)) == 2
    budget = len(raw.faces) * 10 // 67
    vertices, faces_out, info = clean_and_simplify(np.asarray(raw.vertices), np.asarray(raw.faces), budget)
    mesh, watertight, filled = close_mesh(vertices, faces_out)
    assert info["simplified"] and info["faces_removed_by_cleanup"] > 0 and info["raw_faces"] == len(raw.faces)
    assert watertight and filled == 0 and len(mesh.faces) <= budget and len(mesh.faces) > 0.9 * budget
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.euler_number == 0  # the floater gone, the hole kept
    body = raw.split(only_watertight=False)
    body = max(body, key=lambda m: len(m.faces))
    distance = _symmetric_hausdorff(body, mesh) / np.linalg.norm(body.extents)
    print(f"symmetric Hausdorff {distance:.5f} of the diagonal, {len(raw.faces)} -> {len(mesh.faces)} faces")
    assert distance < 0.005


# ------------------------------------------------------------------ warm-up at start

def test_warm_up_loads_once_and_a_creation_meanwhile_waits_for_that_load(mesh_env, monkeypatch, caplog):
    import logging
    import time

    import tools.backends as backends
    from tools.backends import hunyuan3d, warm_up, warming_up

    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "hunyuan3d,relief")
    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "sketch")
    reset_settings()
    monkeypatch.setattr(hunyuan3d, "_loaded", None)  # a fresh process: nothing loaded yet
    monkeypatch.setattr(backends, "_warm_ups", {})
    slow_check = hunyuan3d._check_local_only

    def slow_load_step(path):  # inside the load, under the lock: widens the window a creation can start in
        time.sleep(1.5)
        slow_check(path)

    monkeypatch.setattr(hunyuan3d, "_check_local_only", slow_load_step)
    caplog.set_level(logging.INFO, logger="atelier.backends")
    entries = warm_up()
    assert list(entries) == ["hunyuan3d:model"] and warm_up() == entries  # once per process
    deadline = time.monotonic() + 30
    while not hunyuan3d._pipeline_lock.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert warming_up() == ["hunyuan3d"]
    events: list[str] = []
    asset = Hunyuan3DBackend().generate(MeshRequest(image=_png(_quadrants()), seed=1), lambda f, m: events.append(m))[0]
    entries["hunyuan3d:model"].thread.join(30)
    loads = [r for r in caplog.records if r.getMessage().startswith("hunyuan3d loaded")]
    assert len(loads) == 1, [r.getMessage() for r in loads]
    assert any("warming up" in m for m in events) and asset.metadata["seconds"]["load"] > 0.1  # it waited
    assert entries["hunyuan3d:model"].state == "ready" and warming_up() == []


# ------------------------------------------------------------------ marching cubes on the GPU (tested here on CPU tensors)

def test_torch_marching_cubes_gives_scikit_images_vertices_and_a_closed_surface():
    """The torch implementation (used when the grid is on a GPU) against scikit-image on the same grid: the same
    vertices (one per crossing grid edge, linearly interpolated), as many faces, wound the same way, closed."""
    from skimage import measure

    from tools.backends.marching_cubes import marching_cubes_torch

    n = 72
    axis = np.linspace(-1, 1, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    torus = 0.18 - np.sqrt((np.sqrt(x ** 2 + y ** 2) - 0.55) ** 2 + z ** 2)
    ripple = 0.05 * np.sin(7 * x) * np.cos(5 * y) * np.sin(6 * z)
    field = (np.maximum(torus, 0.3 - np.sqrt(x ** 2 + (y - 0.5) ** 2 + z ** 2)) + ripple).astype(np.float32)
    theirs_v, theirs_f, _, _ = measure.marching_cubes(field, 0.0, method="lewiner")
    ours_v, ours_f = (t.numpy() for t in marching_cubes_torch(torch.from_numpy(field), 0.0))
    assert ours_v.shape == theirs_v.shape and ours_f.shape == theirs_f.shape
    assert np.abs(np.sort(ours_v, axis=0) - np.sort(theirs_v, axis=0)).max() < 1e-4
    theirs, ours = trimesh.Trimesh(theirs_v, theirs_f, process=False), trimesh.Trimesh(ours_v, ours_f, process=False)
    assert ours.is_watertight and ours.euler_number == theirs.euler_number == 0
    assert np.sign(ours.volume) == np.sign(theirs.volume) and abs(ours.volume / theirs.volume - 1) < 1e-3

    # noise: every ambiguous case occurs; the surface stays a manifold (no edge on more than two faces) and an
    # undecoded (NaN) corner makes its cell faceless instead of making NaN vertices
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((32, 32, 32)).astype(np.float32))
    noise[10, 10, 10] = float("nan")
    vertices, faces = marching_cubes_torch(noise, 0.0)
    edges = np.sort(trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False).edges, axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert uses.max() == 2 and not torch.isnan(vertices).any()
    interior = (vertices > 0.5).all(1) & (vertices < 30.5).all(1) & ~((vertices - 10).abs() <= 1).all(1)
    assert interior.sum() > 1000
