"""Exports (tools/export.py) of a real relief GLB: each format written and read back (trimesh; the 3MF package's XML
by read_3mf), STL/3MF Z-up on the bed at the size asked for and watertight; bad formats and sizes refused; the CLI
`atelier export` and the route GET /creations/{id}/export, scoped to the user."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw

from tools.backends.base import GeneratedAsset, MeshRequest
from tools.backends.relief import ReliefBackend
from tools.export import USDZ_MISSING, ExportError, export_creation, export_model, read_3mf

from conftest import cli_env
from services import ROOT


@pytest.fixture(scope="module")
def glb() -> bytes:
    image = Image.new("RGB", (160, 120), (240, 240, 235))
    ImageDraw.Draw(image).ellipse((40, 20, 120, 100), fill=(180, 30, 30))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    (asset,) = ReliefBackend().generate(MeshRequest(image=buf.getvalue()))
    return asset.data


def read_back(data: bytes, fmt: str) -> trimesh.Trimesh:
    if fmt == "3mf":
        mesh, unit = read_3mf(data)
        assert unit == "millimeter"
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= set(package.namelist())
        return mesh
    return trimesh.load(io.BytesIO(data), file_type=fmt, force="mesh")


@pytest.mark.parametrize("fmt", ["stl", "3mf"])
def test_print_formats_at_the_size_asked_z_up_on_the_bed_watertight(glb, fmt):
    source = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    result = export_model(glb, fmt, size_mm=80)
    mesh = read_back(result.data, fmt)
    assert result.facts["watertight"] is True and mesh.is_watertight
    assert len(mesh.faces) == len(source.faces)
    assert max(mesh.extents) == pytest.approx(80, abs=0.01)
    assert mesh.bounds[0][2] == pytest.approx(0, abs=1e-3)  # on the bed
    assert abs(mesh.bounds[0][0] + mesh.bounds[1][0]) < 1e-3 and abs(mesh.bounds[0][1] + mesh.bounds[1][1]) < 1e-3  # centred
    # glTF's Y (up) is Z now: the relief's height (its Y extent in the GLB) is the print's Z extent
    assert mesh.extents[2] / max(mesh.extents) == pytest.approx(source.extents[1] / max(source.extents), rel=1e-3)
    default = read_back(export_model(glb, fmt).data, fmt)
    assert max(default.extents) == pytest.approx(100, abs=0.01)  # DEFAULT_PRINT_MM


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_viewing_formats_read_back_with_colour(glb, fmt):
    source = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    result = export_model(glb, fmt)
    mesh = read_back(result.data, fmt)
    assert len(mesh.faces) == len(source.faces) and np.allclose(mesh.extents, source.extents, atol=1e-4)
    if fmt == "glb":
        assert result.data == glb
    else:  # the texture as vertex colours: the picture's red disc on its light ground
        colours = {tuple(int(v) for v in c) for c in np.unique(mesh.visual.vertex_colors[:, :3], axis=0)}
        assert {(180, 30, 30), (240, 240, 235)} <= colours
    scaled = read_back(export_model(glb, fmt, size_mm=50).data, fmt)
    assert max(scaled.extents) == pytest.approx(0.05 if fmt == "glb" else 50, rel=1e-3)


def test_holes_filled_and_watertight_reported():
    box = trimesh.creation.box((1, 1, 1))
    box.update_faces(np.arange(len(box.faces)) != 0)  # one triangle missing: open
    assert not box.is_watertight
    result = export_model(trimesh.Scene(box).export(file_type="glb"), "stl", size_mm=20)
    assert result.facts["watertight"] is True and read_back(result.data, "stl").is_watertight


@pytest.mark.parametrize("fmt,size,words", [
    ("usdz", None, "USDZ is not offered"), ("fbx", None, "format must be one of glb, obj, stl, 3mf, ply, usdz"),
    ("stl", 0, "size_mm must be between 1 and 10000"), ("stl", float("nan"), "size_mm must be between"),
    ("stl", "tall", "size_mm must be a number"), ("stl", 1e9, "size_mm must be between")])
def test_bad_format_or_size_refused(glb, fmt, size, words):
    with pytest.raises(ExportError, match=words):
        export_model(glb, fmt, size)


def test_not_a_model_refused():
    with pytest.raises(ExportError, match="could not be read as GLB"):
        export_model(b"glTF-but-not-really", "stl")


def test_cli_export_and_route_scoped_to_the_user(data_dir, store, glb, tmp_path):
    picture = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(picture, "PNG")
    view = store.create(user_id="alice", thread_id=None, original_prompt="a green plaque", enhanced_prompt="a green plaque",
                        assets=[GeneratedAsset("image", picture.getvalue(), "image/png", "sketch"),
                                GeneratedAsset("model", glb, "model/gltf-binary", "relief")])
    flat = store.create(user_id="alice", thread_id=None, original_prompt="only a picture", enhanced_prompt="only a picture",
                        assets=[GeneratedAsset("image", picture.getvalue(), "image/png", "sketch")])
    with pytest.raises(LookupError):
        export_creation(store, view.id, "bob", "stl")

    work = tmp_path / "out"
    work.mkdir()

    def atelier(*args):
        return subprocess.run([sys.executable, "-m", "agent.cli", "export", *args], cwd=work, env=cli_env(data_dir),
                              capture_output=True, text=True, timeout=120)

    out = atelier(view.id, "--format", "stl", "--size-mm", "60", "--user", "alice", "--json")
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    written = work / f"{view.id}.stl"
    assert facts["path"] == str(written) and facts["watertight"] is True
    assert max(trimesh.load(written, force="mesh").extents) == pytest.approx(60, abs=0.01)
    target = work / "plaque.3mf"
    assert atelier(view.id, "--format", "3mf", "--out", str(target), "--user", "alice").returncode == 0
    assert read_back(target.read_bytes(), "3mf").is_watertight
    bob = atelier(view.id, "--format", "stl", "--user", "bob")
    assert bob.returncode == 1 and f"no creation '{view.id}' for user 'bob'" in bob.stderr
    usdz = atelier(view.id, "--format", "usdz", "--user", "alice")
    assert usdz.returncode == 2 and USDZ_MISSING[:40] in usdz.stderr and "Traceback" not in usdz.stderr
    no_model = atelier(flat.id, "--format", "stl", "--user", "alice")
    assert no_model.returncode == 1 and "has no 3D model yet" in no_model.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted([written.name, target.name])  # no temp files left

    # the download route (open local mode: ?user_id= names the user)
    from starlette.testclient import TestClient

    from agent.api.app import app

    client = TestClient(app)
    response = client.get(f"/creations/{view.id}/export", params={"format": "3mf", "size_mm": "40", "user_id": "alice"})
    assert response.status_code == 200 and response.headers["x-atelier-watertight"] == "true"
    assert f'filename="{view.id}.3mf"' in response.headers["content-disposition"]
    assert max(read_back(response.content, "3mf").extents) == pytest.approx(40, abs=0.01)
    assert client.get(f"/creations/{view.id}/export", params={"format": "stl", "user_id": "bob"}).status_code == 404
    refused = client.get(f"/creations/{view.id}/export", params={"format": "usdz", "user_id": "alice"})
    assert refused.status_code == 422 and "USDZ is not offered" in refused.text
    assert client.get(f"/creations/{view.id}/export", params={"format": "stl", "size_mm": "-3", "user_id": "alice"}).status_code == 422
    assert (ROOT / "tools" / "export.py").is_file()
