"""The two offline backends, for real: `sketch` (text -> labelled PNG) and `relief` (picture -> watertight GLB)."""
from __future__ import annotations

import io
import json
import struct
import time

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw, features

from tools.backends import available_backends, generate_with_fallback, load_backend
from tools.backends.base import BackendError, ImageRequest, MeshRequest
from tools.backends.relief import ReliefBackend
from tools.backends.sketch import SketchBackend

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sketch() -> SketchBackend:
    return SketchBackend()


@pytest.fixture(scope="module")
def relief() -> ReliefBackend:
    return ReliefBackend()


@pytest.fixture(scope="module")
def lighthouse(sketch) -> bytes:
    return sketch.generate(ImageRequest(prompt="a glowing lighthouse at sunset", seed=7))[0].data


@pytest.fixture(scope="module")
def lighthouse_glb(relief, lighthouse):
    return relief.generate(MeshRequest(image=lighthouse))[0]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _load_glb(data: bytes) -> trimesh.Trimesh:
    return trimesh.load(io.BytesIO(data), file_type="glb", force="mesh")


# ---------------------------------------------------------------- sketch

def test_sketch_is_a_png_of_the_requested_size(sketch):
    asset = sketch.generate(ImageRequest(prompt="a red fox in a misty forest", width=640, height=384))[0]
    assert asset.data[:8] == PNG_MAGIC
    assert asset.kind == "image" and asset.mime == "image/png" and asset.backend == "sketch"
    img = Image.open(io.BytesIO(asset.data))
    assert img.format == "PNG" and img.size == (640, 384) and img.mode == "RGB"


def test_sketch_is_deterministic_for_prompt_seed_and_size(sketch):
    req = dict(prompt="a crystal cave at night, glowing", seed=42, width=256, height=256)
    first = sketch.generate(ImageRequest(**req))[0]
    again = SketchBackend().generate(ImageRequest(**req))[0]
    assert first.data == again.data
    # no seed: still deterministic, and the seed used is recorded
    a = sketch.generate(ImageRequest(prompt="a quiet harbour", width=128, height=128))[0]
    b = sketch.generate(ImageRequest(prompt="a quiet harbour", width=128, height=128))[0]
    assert a.data == b.data and a.metadata["seed"] == b.metadata["seed"]
    assert isinstance(a.metadata["seed"], int)
    # another seed gives another picture of the same prompt
    other = sketch.generate(ImageRequest(**{**req, "seed": 43}))[0]
    assert other.data != first.data


def test_different_prompts_give_visibly_different_pictures(sketch):
    prompts = ["a glowing lighthouse at sunset", "a green dragon in a forest", "a cabin in winter snow",
               "neon cyberpunk robot", "a sailboat on the ocean at night"]
    pics = [_pixels(sketch.generate(ImageRequest(prompt=p, seed=1, width=256, height=256))[0].data) for p in prompts]
    for i in range(len(pics)):
        for j in range(i + 1, len(pics)):
            diff = float(np.abs(pics[i] - pics[j]).mean())
            assert diff > 12.0, f"{prompts[i]!r} vs {prompts[j]!r} differ by only {diff:.1f}/255"


def test_sketch_palette_follows_mood_words(sketch):
    night = _pixels(sketch.generate(ImageRequest(prompt="a tower at night", seed=3, width=256, height=256))[0].data)
    desert = _pixels(sketch.generate(ImageRequest(prompt="a tower in the desert", seed=3, width=256, height=256))[0].data)
    sunset = _pixels(sketch.generate(ImageRequest(prompt="a tower at sunset", seed=3, width=256, height=256))[0].data)
    assert night.mean() < desert.mean() - 40  # night is dark
    sky = night[:60].reshape(-1, 3).mean(axis=0)
    assert sky[2] > sky[0]  # ... and blue
    horizon = sunset[130:150].reshape(-1, 3).mean(axis=0)
    assert horizon[0] > horizon[2] + 40  # sunset glows orange near the horizon


def test_sketch_is_labelled_and_not_a_model(sketch):
    asset = sketch.generate(ImageRequest(prompt="a mushroom", seed=5))[0]
    md = asset.metadata
    assert md["is_sketch"] is True
    assert md["generator"] == "atelier-sketch-v1"
    assert md["seed"] == 5
    png = Image.open(io.BytesIO(asset.data))
    assert png.text.get("atelier:is_sketch") == "true"
    assert "no image model" in png.text.get("Description", "")
    # the caption box sits in the bottom-left corner: darker than the same strip on the right
    px = _pixels(asset.data)
    h, w, _ = px.shape
    strip_left = px[h - 24:h - 6, 8:120].mean()
    strip_right = px[h - 24:h - 6, w - 120:w - 8].mean()
    assert strip_left != pytest.approx(strip_right, abs=3)
    # the caption's white letters are there
    assert px[h - 24:h - 6, 8:180].max() > 230


def test_sketch_has_a_light_central_subject(sketch):
    px = _pixels(sketch.generate(ImageRequest(prompt="a white cat", seed=11, width=256, height=256))[0].data)
    lum = px @ np.array([0.299, 0.587, 0.114])
    centre = lum[96:200, 96:160].mean()
    edges = np.concatenate([lum[96:200, :24].ravel(), lum[96:200, -24:].ravel()]).mean()
    assert centre > edges


@pytest.mark.parametrize("width,height", [(63, 512), (512, 63), (2049, 512), (512, 4096), (0, 0), (-5, 100)])
def test_sketch_rejects_bad_sizes(sketch, width, height):
    with pytest.raises(BackendError) as err:
        sketch.generate(ImageRequest(prompt="a cat", width=width, height=height))
    assert err.value.transient is False


def test_sketch_rejects_non_integer_size_and_empty_prompt(sketch):
    with pytest.raises(BackendError) as err:
        sketch.generate(ImageRequest(prompt="a cat", width=256.5, height=256))  # type: ignore[arg-type]
    assert err.value.transient is False
    with pytest.raises(BackendError) as err:
        sketch.generate(ImageRequest(prompt="   "))
    assert err.value.transient is False


def test_sketch_extreme_sizes_work(sketch):
    for w, h in ((64, 64), (64, 2048), (2048, 64)):
        img = Image.open(io.BytesIO(sketch.generate(ImageRequest(prompt="a tiny tower", width=w, height=h))[0].data))
        assert img.size == (w, h)


def test_sketch_reports_progress(sketch):
    calls: list[tuple[float | None, str]] = []
    sketch.generate(ImageRequest(prompt="a boat", width=128, height=128), lambda f, m: calls.append((f, m)))
    assert len(calls) >= 3
    fractions = [f for f, _ in calls if f is not None]
    assert fractions == sorted(fractions) and 0.0 <= fractions[0] and fractions[-1] == 1.0
    assert all(isinstance(m, str) and m for _, m in calls)


# ---------------------------------------------------------------- relief

def test_relief_glb_is_valid_binary_gltf(lighthouse_glb):
    data = lighthouse_glb.data
    assert data[:4] == b"glTF"
    version, length = struct.unpack("<II", data[4:12])
    assert version == 2 and length == len(data)
    chunk_len, chunk_type = struct.unpack("<II", data[12:20])
    assert chunk_type == 0x4E4F534A  # JSON
    gltf = json.loads(data[20:20 + chunk_len])
    prim = gltf["meshes"][0]["primitives"][0]
    assert {"POSITION", "TEXCOORD_0", "NORMAL"} <= set(prim["attributes"])
    assert gltf["images"] and gltf["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert lighthouse_glb.mime == "model/gltf-binary" and lighthouse_glb.kind == "model"
    assert len(data) < 10 * 1024 * 1024


def test_relief_mesh_is_closed_textured_and_sane(lighthouse_glb):
    mesh = _load_glb(lighthouse_glb.data)
    assert len(mesh.faces) >= 5000
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume
    assert mesh.volume > 0
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert 0.0 <= mesh.visual.uv.min() and mesh.visual.uv.max() <= 1.0
    assert mesh.visual.material.baseColorTexture is not None
    (x0, y0, z0), (x1, y1, z1) = mesh.bounds
    assert x1 - x0 == pytest.approx(1.0, abs=1e-6) and y1 - y0 == pytest.approx(1.0, abs=1e-6)
    assert z0 == pytest.approx(0.0, abs=1e-9) and 0.15 <= z1 - z0 <= 0.3


def test_relief_raises_the_foreground_and_keeps_the_background_flat(lighthouse_glb):
    md = lighthouse_glb.metadata
    assert md["generator"] == "atelier-relief-v1"
    assert md["watertight"] is True and md["faces"] >= 5000 and md["vertices"] > 0
    assert md["mask"] == "edges+saliency"
    assert 0.02 < md["foreground_fraction"] < 0.5
    mesh = _load_glb(lighthouse_glb.data)
    v = mesh.vertices
    top = v[v[:, 2] > 1e-6]
    rim = top[(np.abs(top[:, 0]) > 0.45) | (np.abs(top[:, 1]) > 0.45)]
    base = rim[:, 2].min()
    assert np.ptp(rim[:, 2]) < 1e-6  # the background near the border is a flat slab
    raised = top[top[:, 2] > base + 0.05]
    assert len(raised) > 200
    # the raised part is the subject in the middle, not the sky or the border
    assert np.abs(raised[:, 0]).mean() < 0.2


def test_relief_texture_is_upright(relief):
    # top half red, bottom half blue: the texture sampled at the mesh's top must be red
    img = Image.new("RGB", (256, 256), (0, 0, 255))
    ImageDraw.Draw(img).rectangle([0, 0, 255, 127], fill=(255, 0, 0))
    mesh = _load_glb(relief.generate(MeshRequest(image=_encode(img, "PNG")))[0].data)
    colours = mesh.visual.to_color().vertex_colors[:, :3].astype(float)
    v = mesh.vertices
    front = v[:, 2] > 1e-6
    upper = colours[front & (v[:, 1] > 0.3)].mean(axis=0)
    lower = colours[front & (v[:, 1] < -0.3)].mean(axis=0)
    assert upper[0] > 200 and upper[2] < 60
    assert lower[2] > 200 and lower[0] < 60


def test_relief_uses_alpha_as_the_mask(relief):
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).polygon([(150, 20), (270, 180), (30, 180)], fill=(40, 200, 90, 255))
    asset = relief.generate(MeshRequest(image=_encode(rgba, "PNG")))[0]
    assert asset.metadata["mask"] == "alpha"
    mesh = _load_glb(asset.data)
    assert mesh.is_watertight
    (x0, y0, _), (x1, y1, _) = mesh.bounds
    assert x1 - x0 == pytest.approx(1.0) and y1 - y0 == pytest.approx(200 / 300)


def test_relief_reads_jpeg_and_webp(relief):
    img = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(img).ellipse([100, 60, 220, 180], fill=(200, 40, 40))
    formats = [("JPEG", {"quality": 90})]
    if features.check("webp"):
        formats.append(("WEBP", {"quality": 90}))
    for fmt, kw in formats:
        asset = relief.generate(MeshRequest(image=_encode(img, fmt, **kw), image_mime=f"image/{fmt.lower()}"))[0]
        assert asset.data[:4] == b"glTF"
        assert asset.metadata["watertight"] and asset.metadata["faces"] >= 5000
        assert asset.metadata["mask"] != "whole-image"


def test_relief_falls_back_to_the_whole_picture_when_there_is_no_subject(relief):
    flat = Image.new("RGB", (200, 200), (90, 120, 200))
    asset = relief.generate(MeshRequest(image=_encode(flat, "PNG")))[0]
    assert asset.metadata["mask"] == "whole-image"
    mesh = _load_glb(asset.data)
    assert mesh.is_watertight and len(mesh.faces) >= 5000


def test_relief_handles_odd_aspect_ratios(relief):
    strip = Image.new("RGB", (64, 1024), (30, 30, 30))
    ImageDraw.Draw(strip).rectangle([16, 400, 48, 600], fill=(240, 240, 240))
    asset = relief.generate(MeshRequest(image=_encode(strip, "PNG")))[0]
    mesh = _load_glb(asset.data)
    assert mesh.is_watertight and len(mesh.faces) >= 5000
    ext = mesh.extents
    assert ext[1] == pytest.approx(1.0) and ext[0] == pytest.approx(64 / 1024)
    assert ext[2] < 0.1  # a thin strip is not turned into a deep wall


@pytest.mark.parametrize("data", [b"", b"definitely not an image", PNG_MAGIC + b"\x00" * 40])
def test_relief_rejects_undecodable_bytes(relief, data):
    with pytest.raises(BackendError) as err:
        relief.generate(MeshRequest(image=data))
    assert err.value.transient is False
    assert str(err.value).startswith("image could not be decoded")


def test_relief_rejects_a_truncated_png_and_a_tiny_image(relief, lighthouse):
    with pytest.raises(BackendError) as err:
        relief.generate(MeshRequest(image=lighthouse[: len(lighthouse) // 3]))
    assert err.value.transient is False and "could not be decoded" in str(err.value)
    with pytest.raises(BackendError) as err:
        relief.generate(MeshRequest(image=_encode(Image.new("RGB", (4, 4)), "PNG")))
    assert err.value.transient is False


def test_relief_is_fast_and_reports_progress(relief, lighthouse):
    calls: list[tuple[float | None, str]] = []
    started = time.perf_counter()
    asset = relief.generate(MeshRequest(image=lighthouse), lambda f, m: calls.append((f, m)))[0]
    seconds = time.perf_counter() - started
    assert seconds < 6.0, f"relief took {seconds:.2f}s for a 512x512 picture"  # ~0.2-0.3s on 2 cores
    assert asset.metadata["faces"] >= 30000
    fractions = [f for f, _ in calls if f is not None]
    assert len(calls) >= 3 and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_relief_is_deterministic(relief, lighthouse):
    a = relief.generate(MeshRequest(image=lighthouse))[0]
    b = relief.generate(MeshRequest(image=lighthouse))[0]
    assert a.data == b.data and a.metadata == b.metadata


# ---------------------------------------------------------------- through the registry

def test_registry_lists_and_loads_both():
    names = available_backends()
    assert {"sketch", "relief"} <= set(names)
    assert isinstance(load_backend("sketch", "image"), SketchBackend)
    assert isinstance(load_backend("relief", "model"), ReliefBackend)
    with pytest.raises(BackendError):
        load_backend("sketch", "model")


def test_sketch_then_relief_through_generate_with_fallback():
    messages: list[str] = []
    images, attempts = generate_with_fallback("image", ["sketch"], ImageRequest(prompt="a cozy cabin in winter snow"),
                                              lambda f, m: messages.append(m))
    assert [a.backend for a in attempts] == ["sketch"] and attempts[0].ok and attempts[0].reason == ""
    assert images[0].metadata["is_sketch"] is True and images[0].data[:8] == PNG_MAGIC

    models, attempts = generate_with_fallback("model", ["relief"], MeshRequest(image=images[0].data, prompt="a cabin"),
                                              lambda f, m: messages.append(m))
    assert attempts[0].ok and attempts[0].backend == "relief"
    assert models[0].data[:4] == b"glTF" and models[0].metadata["watertight"] is True
    assert any("sketch" in m for m in messages) and any("relief" in m for m in messages)


def test_fallback_records_the_first_failure_and_uses_the_sketch():
    messages: list[str] = []
    assets, attempts = generate_with_fallback("image", ["nonexistent", "sketch"], ImageRequest(prompt="a lighthouse"),
                                              lambda f, m: messages.append(m))
    assert [a.backend for a in attempts] == ["nonexistent", "sketch"]
    assert attempts[0].ok is False and "unknown backend 'nonexistent'" in attempts[0].reason
    assert attempts[1].ok is True
    assert assets[0].backend == "sketch" and assets[0].metadata["is_sketch"] is True
    assert any("nonexistent failed" in m for m in messages)


def test_fallback_moves_past_a_bad_request_and_then_gives_up_with_every_reason():
    # relief cannot decode these bytes: the runner keeps the reason and, with nothing left, raises
    with pytest.raises(BackendError) as err:
        generate_with_fallback("model", ["nonexistent", "relief"], MeshRequest(image=b"nope"))
    text = str(err.value)
    assert err.value.transient is False
    assert "nonexistent: unknown backend" in text and "relief: image could not be decoded" in text
