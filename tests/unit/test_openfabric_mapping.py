"""Schema-driven input mapping, output recognition and app addressing (no network)."""
from __future__ import annotations

import asyncio
import base64
import json

import jsonschema
import pytest

from tools.openfabric.breaker import CircuitBreaker, CircuitOpen
from tools.openfabric.config import resolve_app
from tools.openfabric.errors import BadSchema, SchemaUnsatisfiable, TooLarge
from tools.openfabric.output import extract, sniff
from tools.openfabric.schema_mapping import ToolValues, build_input

from openfabric_fakes import glb_bytes, mp4_bytes, png_bytes

pytestmark = pytest.mark.timeout(30)

IMAGE_VALUES = ToolValues(prompt="a lighthouse at dusk", negative_prompt="blurry", seed=1234, width=768, height=512, steps=30)


def props(schema: dict) -> set[str]:
    return set(schema["properties"])


def test_plain_text_to_image_schema():
    schema = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "negative_prompt": {"type": "string"},
            "seed": {"type": "integer", "minimum": 0, "maximum": 1000},
            "width": {"type": "integer", "minimum": 64, "maximum": 1024, "multipleOf": 64},
            "height": {"type": "integer", "minimum": 64, "maximum": 1024, "multipleOf": 64},
            "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 25},
            "guidance_scale": {"type": "number", "default": 7.5},
            "scheduler": {"type": "string", "enum": ["ddim", "euler"]},
        },
        "required": ["prompt", "scheduler"],
        "additionalProperties": False,
    }
    mapped = build_input(schema, IMAGE_VALUES, kind="image")
    body = mapped.body
    assert body == {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "seed": 1000, "width": 768, "height": 512,
                    "num_inference_steps": 25, "guidance_scale": 7.5, "scheduler": "ddim"}
    assert mapped.assigned["seed"] == "seed" and mapped.assigned["scheduler"] == "enum" and mapped.assigned["guidance_scale"] == "default"
    jsonschema.validate(body, schema)


def test_other_names_descriptions_nested_ref_and_size_enum():
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {
            "Params": {"type": "object", "properties": {"noise_seed": {"type": "integer"}, "cfg": {"type": "number", "default": 5}},
                       "required": ["noise_seed"]},
            "Input": {
                "type": "object",
                "properties": {
                    "content": {"type": "array", "items": {"type": "string", "maxLength": 10}, "description": "The text prompt describing the scene"},
                    "avoid": {"type": "string", "description": "Negative prompt: things to avoid"},
                    "resolution": {"type": "string", "enum": ["512x512", "768x512", "512x768"]},
                    "params": {"$ref": "#/definitions/Params"},
                    "notes": {"type": "string"},
                },
                "required": ["content", "params"],
            },
        },
        "$ref": "#/definitions/Input",
    }
    body = build_input(schema, IMAGE_VALUES, kind="image").body
    assert body == {"content": ["a lighthou"], "avoid": "blurry", "resolution": "768x512", "params": {"noise_seed": 1234, "cfg": 5}}
    jsonschema.validate(body, schema)


def test_required_field_that_cannot_be_filled_is_named():
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}, "api_key": {"type": "string"}, "mode": {"type": "boolean"}},
              "required": ["prompt", "api_key"]}
    with pytest.raises(SchemaUnsatisfiable) as err:
        build_input(schema, IMAGE_VALUES, kind="image")
    assert "api_key" in str(err.value) and err.value.fields == ["api_key"]
    assert "mode" not in str(err.value)


def test_no_field_for_the_prompt():
    schema = {"type": "object", "properties": {"count": {"type": "integer"}}}
    with pytest.raises(SchemaUnsatisfiable, match="no field for the prompt"):
        build_input(schema, IMAGE_VALUES, kind="image")


def test_image_to_3d_fields_and_data_uri():
    image = png_bytes()
    schema = {"type": "object", "properties": {"source": {"type": "string", "format": "data-url"}, "texture_size": {"type": "integer", "enum": [512, 1024]}},
              "required": ["source", "texture_size"]}
    body = build_input(schema, ToolValues(image=image, image_mime="image/png"), kind="model").body
    assert body["source"] == "data:image/png;base64," + base64.b64encode(image).decode()
    assert body["texture_size"] == 512
    plain = {"type": "object", "properties": {"input_image": {"type": "string"}, "prompt": {"type": "string"}}, "required": ["input_image"]}
    body = build_input(plain, ToolValues(image=image, prompt="a vase"), kind="model").body
    assert base64.b64decode(body["input_image"]) == image and body["prompt"] == "a vase"


def test_many_inputs_and_nullable():
    schema = {"type": "array", "items": {"type": "object", "properties": {"text": {"type": "string"}, "style": {"type": ["string", "null"]}},
                                         "required": ["text", "style"]}}
    assert build_input(schema, IMAGE_VALUES, kind="image").body == [{"text": "a lighthouse at dusk", "style": None}]


def test_broken_schemas_give_clear_errors():
    loop = {"definitions": {"A": {"$ref": "#/definitions/B"}, "B": {"$ref": "#/definitions/A"}}, "$ref": "#/definitions/A"}
    with pytest.raises(BadSchema, match="recursive"):
        build_input(loop, IMAGE_VALUES, kind="image")
    with pytest.raises(BadSchema, match="non-local"):
        build_input({"$ref": "https://example.com/schema.json"}, IMAGE_VALUES, kind="image")
    with pytest.raises(BadSchema, match="not valid JSON Schema"):
        build_input({"type": "object", "properties": {"prompt": {"type": "strng"}}}, IMAGE_VALUES, kind="image")
    with pytest.raises(BadSchema, match="not a JSON object"):
        build_input(["prompt"], IMAGE_VALUES, kind="image")
    # a recursive (tree) property is fine as long as nobody needs to fill it
    tree = {"definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Node"}}}},
            "type": "object", "properties": {"prompt": {"type": "string"}, "tree": {"$ref": "#/definitions/Node"}}, "required": ["prompt"]}
    assert build_input(tree, IMAGE_VALUES, kind="image").body == {"prompt": "a lighthouse at dusk"}


def test_sniff_magic_bytes():
    assert sniff(png_bytes())[:2] == ("image", "image/png")
    assert sniff(b"\xff\xd8\xff\xe0" + b"\0" * 20)[1] == "image/jpeg"
    assert sniff(b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 8)[1] == "image/webp"
    assert sniff(glb_bytes())[:2] == ("model", "model/gltf-binary")
    assert sniff(json.dumps({"asset": {"version": "2.0"}, "meshes": []}).encode())[2] == "gltf"
    assert sniff(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")[2] == "ply"
    assert sniff(b"# obj\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")[2] == "obj"
    assert sniff(mp4_bytes())[0] == "video"
    assert sniff(b"<html><body>error</body></html>") is None
    assert sniff(b"hello world, this is not a model\nv is a letter\n") is None


def test_extract_inline_base64_data_uri_and_refs():
    image, model = png_bytes(), glb_bytes()
    output = {"images": [base64.b64encode(image).decode()], "mesh": "data:model/gltf-binary;base64," + base64.b64encode(model).decode(),
              "message": "done", "preview": "data_blob_abcdef0123456789"}
    schema = {"type": "object", "properties": {"preview": {"type": "string", "format": "binary"}}}
    fetched = []

    async def fetch(ref: str, field: str):
        fetched.append((ref, field))
        return mp4_bytes(), "video/mp4"

    result = asyncio.run(extract(output, schema, fetch, max_bytes=10_000_000))
    kinds = {(a.field, a.kind, a.source) for a in result.assets}
    assert kinds == {("images[0]", "image", "inline-base64"), ("mesh", "model", "data-uri"), ("preview", "video", "resource")}
    assert fetched == [("data_blob_abcdef0123456789", "preview")]
    with pytest.raises(TooLarge):
        asyncio.run(extract(output, schema, fetch, max_bytes=50))


@pytest.mark.parametrize(
    "value,base,app_id",
    [
        # the host is the id's 32 hex digits without dashes (the dashed name does not exist)
        ("f0997a01-d6d3-a5fe-53d8-561300318557", "https://f0997a01d6d3a5fe53d8561300318557.node3.openfabric.network", "f0997a01d6d3a5fe53d8561300318557"),
        ("f0997a01d6d3a5fe53d8561300318557", "https://f0997a01d6d3a5fe53d8561300318557.node3.openfabric.network", "f0997a01d6d3a5fe53d8561300318557"),
        ("F0997A01-D6D3-A5FE-53D8-561300318557", "https://f0997a01d6d3a5fe53d8561300318557.node3.openfabric.network", "f0997a01d6d3a5fe53d8561300318557"),
        ("69543f29-4d41-4afc-7f29-3d51591f11eb.node3.openfabric.network", "https://69543f294d414afc7f293d51591f11eb.node3.openfabric.network", "69543f294d414afc7f293d51591f11eb"),
        ("69543f294d414afc7f293d51591f11eb.node3.openfabric.network/", "https://69543f294d414afc7f293d51591f11eb.node3.openfabric.network", "69543f294d414afc7f293d51591f11eb"),
        ("https://69543f29-4d41-4afc-7f29-3d51591f11eb.node3.openfabric.network/", "https://69543f294d414afc7f293d51591f11eb.node3.openfabric.network", "69543f294d414afc7f293d51591f11eb"),
        ("wss://69543f294d414afc7f293d51591f11eb.node3.openfabric.network", "https://69543f294d414afc7f293d51591f11eb.node3.openfabric.network", "69543f294d414afc7f293d51591f11eb"),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765", "127.0.0.1:8765"),
        ("wss://apps.example.com/of", "https://apps.example.com/of", "apps.example.com"),
    ],
)
def test_resolve_app(value, base, app_id):
    address = resolve_app(value)
    assert address.base_url == base and address.app_id == app_id
    assert address.url("schema?type=input") == f"{base}/schema?type=input"


def test_resolve_app_rejects_garbage():
    for bad in ("", "ftp://x", "not an app"):
        with pytest.raises(ValueError):
            resolve_app(bad)


def test_breaker_states():
    now = [0.0]
    breaker = CircuitBreaker("k", failures=2, reset_seconds=10, clock=lambda: now[0])
    breaker.record_failure("500")
    breaker.before_call()  # one soft failure: still closed
    breaker.record_failure("500")
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    now[0] = 11
    breaker.before_call()  # half-open trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one trial at a time
    breaker.record_success()
    breaker.before_call()
    breaker.record_failure("timeout", hard=True)
    with pytest.raises(CircuitOpen, match="timeout"):
        breaker.before_call()


def test_plain_urls_are_followed_only_in_result_like_fields():
    fetched = []

    async def fetch(ref: str, field: str):
        fetched.append(field)
        if field == "links.broken_file":
            from tools.openfabric.errors import Unreachable

            raise Unreachable("cannot connect")
        return png_bytes(), "image/png"

    output = {"homepage": "https://example.com/about", "result": "https://cdn.example.com/x.png",
              "links": {"broken_file": "https://gone.example.com/y.png"}, "note": "see https://example.com for more"}
    result = asyncio.run(extract(output, {}, fetch, max_bytes=1_000_000))
    assert [(a.field, a.source) for a in result.assets] == [("result", "url")]
    assert fetched == ["result", "links.broken_file"]
    assert any("could not be fetched" in p for p in result.problems)
