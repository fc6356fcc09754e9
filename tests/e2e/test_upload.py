"""A picture of the user's own (memory/upload.py, agent/uploads.py): validated by content, size and pixels, turned
upright by its EXIF orientation, stripped of its metadata, kept as a creation (backend `upload`) and made into 3D by the
graph's own image → 3D step — from the CLI (`atelier create --image`), the API (POST /creations, then a run) and MCP
over HTTP with a picture larger than the API's ordinary body limit."""
from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from memory.upload import store_upload, validate_picture
from memory.validation import InvalidInput

from conftest import cli_env
from services import ROOT, start_api

pytestmark = pytest.mark.timeout(300)


def jpeg_with_exif(size=(120, 80), orientation=6) -> bytes:
    image = Image.new("RGB", size, (200, 60, 40))
    image.paste((30, 40, 200), (0, 0, size[0] // 2, size[1] // 2))  # a blue top-left quarter shows the rotation
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0), 4: (0.0, 7.0, 0.0)}  # GPS latitude / longitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def png(size=(64, 48), mode="RGB", **info) -> bytes:
    out = io.BytesIO()
    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    Image.new(mode, size, (10, 200, 30, 128)[: len(mode)]).save(out, "PNG", pnginfo=meta)
    return out.getvalue()


def noise_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def forged_png(width: int, height: int) -> bytes:
    """A tiny real PNG whose header claims width x height (CRC fixed): a decompression bomb's shape."""
    data = bytearray(png((16, 16)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_exif_orientation_applied_and_metadata_stripped():
    clean, mime, facts = validate_picture(jpeg_with_exif())
    image = Image.open(io.BytesIO(clean))
    assert mime == "image/jpeg" and image.format == "JPEG" and image.size == (80, 120)  # upright
    assert not image.getexif() and b"PhoneMaker" not in clean and "exif" not in image.info
    # orientation 6 = rotate 90° clockwise to show: the blue top-left quarter is now top-right
    assert image.getpixel((70, 10))[2] > 150 and image.getpixel((10, 10))[0] > 150
    assert facts["exif_orientation"] == 6 and facts["source"] == "upload" and facts["original_format"] == "jpeg"


def test_png_text_chunks_stripped_alpha_kept_webp_becomes_png():
    clean, mime, _ = validate_picture(png(mode="RGBA", Author="Jane Doe", Location="home"))
    image = Image.open(io.BytesIO(clean))
    assert mime == "image/png" and image.mode == "RGBA" and b"Jane Doe" not in clean and not image.text
    webp = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(webp, "WEBP")
    assert validate_picture(webp.getvalue())[1] == "image/png"


@pytest.mark.parametrize("data,limits,words", [
    (b"GIF89a" + b"\0" * 100, {}, "is not a PNG, JPEG or WebP image"),
    (b"just some text, named cat.png", {}, "is not a PNG, JPEG or WebP image"),
    (b"", {}, "is empty"),
    (png((64, 64)), {"max_bytes": 100}, "the limit is 100 (ATELIER_UPLOAD_MAX_BYTES)"),
    (png((100, 100)), {"max_pixels": 5000}, "is 100x100 pixels: it has more pixels than the limit of 5000"),
    (forged_png(60000, 60000), {}, "has more pixels than the limit"),
    (png((8, 40)), {}, "each side must be at least 16"),
    (jpeg_with_exif()[:-300], {}, "could not be decoded"),  # the header whole, the picture cut short
])
def test_bad_pictures_refused(data, limits, words):
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")):
        validate_picture(data, **limits)


def test_upload_is_a_creation_of_its_own_and_what_the_user_works_on(store):
    from memory.session import session_context

    view = store_upload(store, "erin", jpeg_with_exif(), filename="C:\\photos\\..\\kitchen\x1b[31m.jpg", description="my red mug")
    assert view.image.backend == "upload" and view.original_prompt == "my red mug"
    assert view.image.meta["filename"] == "kitchen.jpg" and view.status == "image_only"
    assert session_context(store).current("erin").creation_id == view.id
    with pytest.raises(InvalidInput):
        store_upload(store, "erin", b"not a picture")
    assert store.count() == 1  # the refusal stored nothing


def test_cli_create_with_an_image_makes_it_3d(data_dir, tmp_path):
    photo = tmp_path / "mug.jpg"
    photo.write_bytes(jpeg_with_exif())
    env = cli_env(data_dir, ATELIER_DECISION_POLICY="router")

    def atelier(*args):
        return subprocess.run([sys.executable, "-m", "agent.cli", "create", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)

    out = atelier("--image", str(photo), "my red mug", "--user", "erin", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["creation_id"] == report["upload"] and report["tool_calls"] == ["image_to_3d"]
    assert report["backends"] == {"image": "upload", "model": "relief"} and report["original_prompt"] == "my red mug"
    assert report["model"].endswith(".glb")
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture at all")
    for args, words in ((["--image", str(notes)], "the picture is not a PNG, JPEG or WebP image"),
                        (["--image", str(tmp_path / "missing.jpg")], "is not a file"),
                        (["--image", str(photo), "--seed", "-1"], "seed must be between 0"),
                        ([], "the idea is missing")):
        refused = atelier(*args, "--user", "erin")
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    from memory.store import MemoryStore

    assert [v.id for v in MemoryStore().list("erin")] == [report["creation_id"]]  # refusals stored nothing


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = start_api(tmp_path_factory.mktemp("upload-api"), ATELIER_UPLOAD_MAX_BYTES="600000")
    yield service
    service.stop()


def test_api_upload_then_a_run_makes_it_3d(api):
    dana = httpx.Client(base_url=api.url, headers={"X-Atelier-User": "dana"}, timeout=120)
    made = dana.post("/creations", params={"filename": "mug.jpg", "description": "my red mug"}, content=jpeg_with_exif(),
                     headers={"content-type": "image/jpeg"})
    assert made.status_code == 201, made.text
    upload = made.json()
    assert upload["assets"][0]["backend"] == "upload" and "path" not in upload["assets"][0]
    picture = dana.get(upload["assets"][0]["url"])
    assert Image.open(io.BytesIO(picture.content)).size == (80, 120) and b"PhoneMaker" not in picture.content
    # a new thread: "make it 3D" means what dana is working on, the upload
    thread = dana.post("/threads", json={}).json()
    run = dana.post(f"/threads/{thread['thread_id']}/runs/wait", json={
        "assistant_id": "atelier", "input": {"messages": [{"role": "user", "content": "make it 3D"}]},
        "config": {"configurable": {"enhance": False}}})
    assert run.status_code == 200, run.text
    modelled = dana.get(f"/creations/{upload['id']}").json()
    assert [a["kind"] for a in modelled["assets"]] == ["image", "model"] and modelled["status"] == "complete"
    assert httpx.get(f"{api.url}/creations/{upload['id']}", headers={"X-Atelier-User": "eve"}).status_code == 404

    # larger than the API's ordinary 256 KiB body, within ATELIER_UPLOAD_MAX_BYTES; above it refused unread
    big = noise_png(300)
    assert 262_144 < len(big) < 600_000
    assert dana.post("/creations", content=big, headers={"content-type": "image/png"}).status_code == 201
    huge = dana.post("/creations", content=b"\x89PNG" + b"\0" * 700_000, headers={"content-type": "image/png"})
    assert huge.status_code == 413 and "ATELIER_UPLOAD_MAX_BYTES" in huge.text
    for body, status in ((b"GIF89a" + b"\0" * 50, 422), (forged_png(60000, 60000), 422)):
        assert dana.post("/creations", content=body).status_code == status
    form = dana.post("/creations", files={"file": ("mug.jpg", jpeg_with_exif(), "image/jpeg")})
    assert form.status_code == 415
    assert len(dana.get("/creations").json()["creations"]) == 2  # the refusals stored nothing


async def test_mcp_over_http_takes_a_picture_larger_than_the_api_body_limit(api):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    big = noise_png(300)
    async with httpx.AsyncClient(headers={"X-Atelier-User": "fay"}, timeout=httpx.Timeout(30, read=300)) as client, \
            streamable_http_client(api.url + "/mcp", http_client=client) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("make_3d", {"image_base64": base64.b64encode(big).decode(), "filename": "noise.png"})
    assert not result.isError, result.content[0].text
    assert result.structuredContent["user_id"] == "fay" and result.structuredContent["model"]
