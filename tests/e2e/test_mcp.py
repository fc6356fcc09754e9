"""Atelier's MCP server (agent/mcp_server.py) with the official MCP client (mcp.client.stdio / streamable_http +
ClientSession): a real `atelier mcp` subprocess and a real `atelier serve` at /mcp.

Over stdio: the tool list with described arguments and annotations, one whole `create` (progress notifications, the
picture as image content, the GLB embedded), the resources, recall, make_3d on a creation and on a photo of one's own,
forget, and bad arguments refused as tool errors. Over HTTP with two API keys: no token is refused, and what alice
makes bob can neither see, read, list, recall nor forget."""
from __future__ import annotations

import base64
import io
import sys

import httpx
import pytest
import trimesh
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from services import ROOT, atelier_env, start_api

pytestmark = pytest.mark.timeout(300)

TOOLS = {"create", "make_3d", "recall", "get_creation", "list_creations", "forget", "export"}


def stdio_params(data_dir, **env) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "agent.cli", "mcp"], cwd=str(ROOT),
                                 env=atelier_env(data_dir, **env))


def glb_mesh(data: bytes) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100
    return mesh


def check_creation(result, *, user: str) -> str:
    """A creation result a client can show: text, a bounded PNG/JPEG, the GLB embedded, the ids."""
    assert not result.isError, result.content[0].text
    kinds = [c.type for c in result.content]
    assert kinds[0] == "text" and "image" in kinds and "resource" in kinds, kinds
    picture = next(c for c in result.content if c.type == "image")
    image = Image.open(io.BytesIO(base64.b64decode(picture.data)))
    assert image.format.lower() in picture.mimeType and max(image.size) <= 1024
    model = next(c for c in result.content if c.type == "resource").resource
    assert model.mimeType == "model/gltf-binary" and model.uri.unicode_string().endswith("/model")
    glb_mesh(base64.b64decode(model.blob))
    data = result.structuredContent
    assert data["user_id"] == user and data["status"] == "complete" and data["model"] == f"atelier://creations/{data['creation_id']}/model"
    assert str(ROOT) not in str(result.model_dump())  # no server paths go to a client
    return data["creation_id"]


def exif_photo() -> tuple[bytes, tuple[int, int]]:
    """A JPEG, 120x80 as stored, with EXIF orientation 6 (shown rotated: 80x120) and a GPS tag that must not survive."""
    image = Image.new("RGB", (120, 80), (200, 60, 40))
    for x in range(0, 60):
        for y in range(0, 40):
            image.putpixel((x, y), (30, 40, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPSLatitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue(), (80, 120)


async def test_stdio_tools_create_resources_recall_make_3d_forget(tmp_path):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async with stdio_client(stdio_params(tmp_path / "data", ATELIER_MCP_USER="carol")) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = {t.name: t for t in (await session.list_tools()).tools}
            assert set(listed) == TOOLS
            create = listed["create"]
            assert {"idea", "make_3d", "enhance", "size", "seed", "steps"} <= set(create.inputSchema["properties"])
            assert create.inputSchema["required"] == ["idea"]
            assert all(p.get("description") for p in create.inputSchema["properties"].values())
            assert listed["forget"].annotations.destructiveHint is True
            assert all(listed[n].annotations.readOnlyHint for n in ("recall", "get_creation", "list_creations"))
            assert create.annotations.readOnlyHint is False and create.annotations.destructiveHint is False

            result = await session.call_tool("create", {"idea": "a red kite over a green hill", "enhance": False, "seed": 7},
                                             progress_callback=on_progress)
            kite = check_creation(result, user="carol")
            assert progress and progress[-1][0] == progress[-1][1] == 2  # text_to_image, image_to_3d
            assert [p[0] for p in progress] == sorted(p[0] for p in progress)
            assert any("image_to_3d" in (p[2] or "") for p in progress)

            templates = {t.uriTemplate for t in (await session.list_resource_templates()).resourceTemplates}
            assert templates == {"atelier://creations/{creation_id}", "atelier://creations/{creation_id}/image",
                                 "atelier://creations/{creation_id}/model"}
            model = (await session.read_resource(f"atelier://creations/{kite}/model")).contents[0]
            assert model.mimeType == "model/gltf-binary"
            glb_mesh(base64.b64decode(model.blob))
            about = (await session.read_resource(f"atelier://creations/{kite}")).contents[0]
            assert '"original_prompt": "a red kite over a green hill"' in about.text

            stl = await session.call_tool("export", {"creation_id": kite, "format": "stl", "size_mm": 60})
            assert not stl.isError and stl.structuredContent["watertight"] is True
            printed = trimesh.load(io.BytesIO(base64.b64decode(stl.content[1].resource.blob)), file_type="stl")
            assert stl.content[1].resource.mimeType == "model/stl" and max(printed.extents) == pytest.approx(60, abs=0.01)
            usdz = await session.call_tool("export", {"creation_id": kite, "format": "usdz"})
            assert usdz.isError and "USDZ is not offered" in usdz.content[0].text

            recalled = await session.call_tool("recall", {"query": "the kite I made today"})
            assert not recalled.isError and recalled.structuredContent["creations"][0]["id"] == kite
            assert kite in recalled.content[0].text

            # make_3d on the creation, and on a photo of one's own (validated, upright, EXIF gone, kept as an upload)
            again = await session.call_tool("make_3d", {"creation_id": kite})
            assert check_creation(again, user="carol") == kite
            photo, upright = exif_photo()
            uploaded = await session.call_tool("make_3d", {"image_base64": base64.b64encode(photo).decode(), "filename": "../../etc/me.jpg"})
            upload_id = check_creation(uploaded, user="carol")
            shown = await session.call_tool("get_creation", {"creation_id": upload_id})
            image_asset = next(a for a in shown.structuredContent["assets"] if a["kind"] == "image")
            assert image_asset["backend"] == "upload" and image_asset["meta"]["filename"] == "me.jpg"
            stored = (await session.read_resource(f"atelier://creations/{upload_id}/image")).contents[0]
            stored_image = Image.open(io.BytesIO(base64.b64decode(stored.blob)))
            assert stored_image.size == upright and not stored_image.getexif()

            # bad arguments: tool errors with the CLI's words, nothing made
            for args, words in (({"idea": "x", "size": "5x5"}, "size must be between 64x64 and 2048x2048"),
                                ({"idea": "x", "size": "big"}, "size must look like 512x512"),
                                ({"idea": "   "}, "the idea is empty"),
                                ({"idea": "x", "seed": -1}, "seed must be between 0"),
                                ({"idea": "x", "steps": 5000}, "steps must be between 1 and 200"),
                                ({}, "create: idea: Field required"), ({"idea": 5}, "create: idea: Input should be a valid string"),
                                ({"idea": "x", "seed": "seven"}, "seed: Input should be a valid integer")):
                refused = await session.call_tool("create", args)
                assert refused.isError and words in refused.content[0].text, (args, refused.content[0].text)
                assert "Traceback" not in refused.content[0].text and "pydantic.dev" not in refused.content[0].text
            for args, words in (({}, "exactly one of creation_id or image_base64"),
                                ({"creation_id": "nope"}, "there is no creation 'nope' with an image"),
                                ({"image_base64": "not base64!"}, "not valid base64"),
                                ({"image_base64": base64.b64encode(b"GIF89a not really").decode()}, "is not a PNG, JPEG or WebP image")):
                refused = await session.call_tool("make_3d", args)
                assert refused.isError and words in refused.content[0].text, (args, refused.content[0].text)
            listing = await session.call_tool("list_creations", {"limit": 0})
            assert listing.isError and "limit must be between 1 and 100" in listing.content[0].text
            everything = await session.call_tool("list_creations", {})
            assert len(everything.structuredContent["creations"]) == 2  # the kite and the upload, nothing from refusals

            gone = await session.call_tool("forget", {"creation_id": kite})
            assert not gone.isError and gone.structuredContent["id"] == kite
            missing = await session.call_tool("get_creation", {"creation_id": kite})
            assert missing.isError and missing.content[0].text == f"no creation '{kite}' for user 'carol'"
            again = await session.call_tool("forget", {"creation_id": kite})
            assert again.isError and "nothing was deleted" in again.content[0].text


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("mcp-api")
    service = start_api(data, ATELIER_API_KEYS="alice:alice-token,bob:bob-token")
    yield service
    service.stop()


async def call(api, token: str | None, name: str, args: dict, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300)) as client, \
            streamable_http_client(api.url + "/mcp", http_client=client) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        if name == "__tools__":
            return await session.list_tools()
        if name == "__read__":
            return await session.read_resource(args["uri"])
        return await session.call_tool(name, args, **kwargs)


async def test_http_two_users_isolated(api):
    # no token, a wrong one: refused before any MCP message is read (the history API's identity)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(api.url + "/mcp", headers={**headers, "Accept": "application/json, text/event-stream"},
                              json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert response.status_code == 401, response.text
    tools = await call(api, "alice-token", "__tools__", {})
    assert {t.name for t in tools.tools} == TOOLS  # Atelier's tools, not langgraph-api's generic graph tool

    steps = []

    async def on_progress(value, total, message):
        steps.append(value)

    made = await call(api, "alice-token", "create", {"idea": "a blue porcelain teapot", "enhance": False}, progress_callback=on_progress)
    teapot = check_creation(made, user="alice")
    assert steps and steps[-1] == 2

    for name, args in (("get_creation", {"creation_id": teapot}), ("forget", {"creation_id": teapot}),
                       ("make_3d", {"creation_id": teapot}), ("export", {"creation_id": teapot, "format": "glb"})):
        refused = await call(api, "bob-token", name, args)
        assert refused.isError and "teapot" not in str(refused.model_dump()), (name, refused.content[0].text)
    with pytest.raises(Exception) as raised:  # a resource of alice's, asked for by bob: an MCP error
        await call(api, "bob-token", "__read__", {"uri": f"atelier://creations/{teapot}/model"})
    assert "teapot" not in str(raised.value)
    bobs = await call(api, "bob-token", "list_creations", {})
    assert bobs.structuredContent["creations"] == []
    assert (await call(api, "bob-token", "recall", {"query": "teapot"})).structuredContent["creations"] == []

    alices = await call(api, "alice-token", "recall", {"query": "the porcelain teapot"})
    assert [c["id"] for c in alices.structuredContent["creations"]] == [teapot]
    model = (await call(api, "alice-token", "__read__", {"uri": f"atelier://creations/{teapot}/model"})).contents[0]
    glb_mesh(base64.b64decode(model.blob))
    # the same creation through the history API and its export route, for the same caller only
    alice, bob = {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer bob-token"}
    assert httpx.get(f"{api.url}/creations/{teapot}", headers=alice).status_code == 200
    stl = httpx.get(f"{api.url}/creations/{teapot}/export", params={"format": "stl", "size_mm": "50"}, headers=alice, timeout=60)
    assert stl.status_code == 200 and stl.headers["x-atelier-watertight"] == "true"
    assert max(trimesh.load(io.BytesIO(stl.content), file_type="stl").extents) == pytest.approx(50, abs=0.01)
    assert httpx.get(f"{api.url}/creations/{teapot}/export", params={"format": "stl"}, headers=bob, timeout=60).status_code == 404


async def test_a_failed_3d_step_is_a_tool_error_that_still_shows_the_picture(tmp_path):
    # no Hunyuan3D weights in an empty models dir: the only 3D backend fails, as it would on a box without them
    env = {"ATELIER_MODEL_BACKENDS": "hunyuan3d", "ATELIER_MODELS_DIR": str(tmp_path / "no-models")}
    async with stdio_client(stdio_params(tmp_path / "data", **env)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("create", {"idea": "a brass owl", "enhance": False})
    assert result.isError
    text = result.content[0].text
    assert "Sorry — image_to_3d failed" in text and "Traceback" not in text, text
    assert [c.type for c in result.content] == ["text", "image"]  # the picture that was made, no model
    assert result.structuredContent["status"] == "failed" and result.structuredContent["model"] is None
