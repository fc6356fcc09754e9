"""The real Openfabric apps. Skipped only when their host names cannot be resolved (no network here)."""
from __future__ import annotations

import socket

import pytest

from tools.openfabric.client import OpenfabricClient, generate_sync, reset_state, run_sync
from tools.openfabric.config import OpenfabricSettings, resolve_app
from tools.openfabric.schema_mapping import ToolValues, build_input
from tools.settings import get_settings

pytestmark = pytest.mark.timeout(600)


def _require_resolvable(app: str) -> str:
    host = resolve_app(app).host
    try:
        socket.getaddrinfo(host.split(":")[0], 443)
    except OSError as exc:
        reason = f"cannot resolve Openfabric host {host}: {exc}"
        print(reason)
        pytest.skip(reason)
    return host


def test_real_openfabric_text_to_image_then_image_to_3d():
    settings = get_settings()
    for app in (settings.text_to_image_app, settings.image_to_3d_app):
        _require_resolvable(app)
    reset_state()
    of = OpenfabricSettings(execution_timeout=280, request_timeout=30)

    async def schemas(app: str):
        client = OpenfabricClient(app, of)
        async with client.session():
            return await client.metadata()

    image_meta = run_sync(lambda: schemas(settings.text_to_image_app))
    model_meta = run_sync(lambda: schemas(settings.image_to_3d_app))
    print("text-to-image manifest:", image_meta.trimmed_manifest(), "input:", image_meta.input_schema)
    print("image-to-3d manifest:", model_meta.trimmed_manifest(), "input:", model_meta.input_schema)
    # the schemas the apps publish today can be satisfied
    build_input(image_meta.input_schema, ToolValues(prompt="a small red robot"), kind="image")
    build_input(model_meta.input_schema, ToolValues(image=b"\x89PNG\r\n\x1a\n"), kind="model")

    images = generate_sync(settings.text_to_image_app, "image", ToolValues(prompt="a small red robot, studio light", width=512, height=512), settings=of)
    assert images[0].kind == "image" and images[0].metadata["app_id"]
    models = generate_sync(settings.image_to_3d_app, "model", ToolValues(image=images[0].data, image_mime=images[0].mime), settings=of)
    assert models[0].kind == "model" and models[0].mime.startswith(("model/", "application/"))
