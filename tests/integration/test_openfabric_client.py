"""The Openfabric client against the local node and against fake apps with other schemas and injected faults.

Everything runs on 127.0.0.1 with short timeouts; servers run in background threads and stop by themselves.
"""
from __future__ import annotations

import base64
import time

import jsonschema
import pytest

from agent.openfabric_node import LocalNode, main as node_main, serve_in_thread
from models.settings import reset_settings
from tools.backends import generate_with_fallback, load_backend
from tools.backends.base import BackendError, ImageRequest, MeshRequest
from tools.openfabric.client import generate_sync
from tools.openfabric.protocol import IMAGE_TO_3D, SIMPLE, TEXT_TO_IMAGE
from tools.openfabric.schema_mapping import ToolValues

from openfabric_fakes import (  # noqa: F401 (fresh_openfabric_state is an autouse fixture)
    IMAGE_OUTPUT,
    FakeApp,
    Faults,
    dead_url,
    fast_settings,
    fresh_openfabric_state,
    glb_bytes,
    mp4_bytes,
    png_bytes,
    sha,
)

pytestmark = pytest.mark.timeout(60)

PROMPT = ToolValues(prompt="a paper crane on a desk", negative_prompt="text", seed=7, width=256, height=256)


fast = fast_settings


def run(app_url: str, kind: str = "image", values: ToolValues = PROMPT, progress=None, **settings):
    return generate_sync(app_url, kind, values, progress or (lambda f, m: None), settings=fast(**settings))


# ---------------------------------------------------------------------------------------------- local node (simple shape)
# The node's default shape mirrors the real apps (tests/integration/test_openfabric_marshmallow.py); these use the friendlier one.


@pytest.fixture(scope="module")
def image_node():
    node = LocalNode(TEXT_TO_IMAGE, load_backend("sketch", "image"), backend_name="sketch", shape=SIMPLE)
    server = serve_in_thread(node.make_app())
    yield node, server
    server.stop()


@pytest.fixture(scope="module")
def model_node():
    node = LocalNode(IMAGE_TO_3D, load_backend("relief", "model"), backend_name="relief", shape=SIMPLE)
    server = serve_in_thread(node.make_app())
    yield node, server
    server.stop()


def test_local_node_text_to_image_over_socketio(image_node):
    node, server = image_node
    events = []
    assets = run(server.url, progress=lambda f, m: events.append((f, m)))
    assert len(assets) == 1
    asset = assets[0]
    assert asset.kind == "image" and asset.mime == "image/png" and asset.data.startswith(b"\x89PNG")
    md = asset.metadata
    assert md["transport"] == "socket.io" and md["field"] == "result" and md["source"] == "resource"
    assert md["app_version"] == "1.0.0" and md["manifest"]["name"] == "atelier-local-text-to-image"
    assert md["input_fields"] == {"prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed", "width": "width", "height": "height"}
    assert md["sha256"] == sha(asset.data) and md["seed"] == 7
    # the bytes are exactly what the node stored, and what the backend makes for the same request
    stored, mime = node.store.get("data_blob_" + md["sha256"])
    assert stored == asset.data and mime == "image/png"
    direct = load_backend("sketch", "image").generate(ImageRequest(prompt=PROMPT.prompt, negative_prompt="text", width=256, height=256, seed=7))
    assert sha(direct[0].data) == md["sha256"]
    # progress streamed from the node's backend through socket.io
    fractions = [f for f, _ in events if f is not None]
    assert any(0 < f < 1 for f in fractions) and fractions[-1] == 1.0
    assert any("submitted" in m for _, m in events)


def test_local_node_image_to_3d_over_rest(model_node):
    node, server = model_node
    image = png_bytes(64, (30, 120, 200))
    assets = run(server.url, "model", ToolValues(image=image, image_mime="image/png"), transport="rest", execution_timeout=30)
    model = assets[0]
    assert model.kind == "model" and model.mime == "model/gltf-binary" and model.data[:4] == b"glTF"
    assert model.metadata["transport"] == "rest" and model.metadata["field"] == "generated_object"
    assert node.store.get("data_blob_" + sha(model.data))[0] == model.data


def test_local_node_rejects_bad_input_and_main_reports_bad_backend(image_node):
    import httpx

    _node, server = image_node
    response = httpx.post(f"{server.url}/execution", json={"prompt": "x", "colour": "red"}, timeout=5)
    assert response.status_code == 400 and "colour" in response.json()["error"]
    assert httpx.get(f"{server.url}/resource", params={"reid": "data_blob_00"}, timeout=5).status_code == 404
    assert node_main(["text-to-image", "--port", "0", "--backend", "no-such-backend"]) == 2
    assert node_main(["image-to-3d", "--backend", "openfabric"]) == 2


# ---------------------------------------------------------------------------------------------- other schemas


def test_other_field_names_enums_extra_required_and_inline_base64():
    image = png_bytes(16)
    schema = {
        "type": "object",
        "properties": {
            "text": {"type": "array", "items": {"type": "string"}, "description": "Prompts"},
            "dims": {"type": "string", "enum": ["512x512", "1024x1024"]},
            "quality": {"type": "string", "enum": ["draft", "final"]},
            "guidance": {"type": "number", "minimum": 1, "maximum": 20, "default": 7.5},
            "rng_seed": {"type": "integer", "minimum": 0, "maximum": 5},
            "watermark": {"type": "boolean"},
        },
        "required": ["text", "dims", "quality"],
        "additionalProperties": False,
    }
    output_schema = {"type": "object", "properties": {"images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}}
    with FakeApp(input_schema=schema, output_schema=output_schema,
                 respond=lambda app, body: {"images": [base64.b64encode(image).decode()], "status": "ok"}) as app:
        assets = run(app.url)
        (transport, body), = app.executions
    assert transport == "socket"
    assert body == {"text": [PROMPT.prompt], "dims": "512x512", "quality": "draft", "guidance": 7.5, "rng_seed": 5}
    assert set(body) <= set(schema["properties"])
    jsonschema.validate(body, schema)
    assert app.socket_headers[0]["uid"] == "atelier" and len(app.socket_headers[0]["rid"]) == 32
    assert [a.metadata["sha256"] for a in assets] == [sha(image)]
    assert assets[0].metadata["source"] == "inline-base64" and assets[0].metadata["field"] == "images[0]"


def test_unfillable_required_field_is_named_and_nothing_is_sent():
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}, "licence_key": {"type": "string"}}, "required": ["prompt", "licence_key"]}
    with FakeApp(input_schema=schema) as app:
        with pytest.raises(BackendError) as err:
            run(app.url)
    assert "licence_key" in str(err.value) and not err.value.transient
    assert app.executions == []


def test_rest_only_app_with_data_uri_and_url_outputs():
    image, model, video = png_bytes(), glb_bytes(), mp4_bytes()
    schema = {"type": "object", "properties": {"input_image": {"type": "string", "format": "binary"}}, "required": ["input_image"]}
    out_schema = {"type": "object", "properties": {"mesh": {"type": "string"}, "turntable": {"type": "string", "format": "uri"}}}

    def respond(app, body):
        return {"mesh": "data:model/gltf-binary;base64," + base64.b64encode(model).decode(),
                "turntable": app.file_url("spin.mp4", video, "video/mp4")}

    with FakeApp(input_schema=schema, output_schema=out_schema, respond=respond, socket_io=False) as app:
        assets = run(app.url, "model", ToolValues(image=image))
        assert base64.b64decode(app.bodies()[0]["input_image"]) == image
        assert app.counts["socket-execute"] == 0 and app.counts["execution"] == 1
        # the socket.io endpoint is remembered as missing: the next request goes straight to REST
        run(app.url, "model", ToolValues(image=image))
        assert app.counts["execution"] == 2
    assert [(a.kind, a.mime, a.metadata["transport"]) for a in assets] == [("model", "model/gltf-binary", "rest"), ("video", "video/mp4", "rest")]
    assert sha(assets[0].data) == sha(model) and sha(assets[1].data) == sha(video)


def test_socket_only_mode_fails_clearly_without_socketio():
    with FakeApp(socket_io=False) as app:
        with pytest.raises(BackendError, match="socket.io connection"):
            run(app.url, transport="socket", retries=1)


# ---------------------------------------------------------------------------------------------- faults


def test_5xx_is_retried_with_backoff_then_succeeds():
    with FakeApp(socket_io=False, faults=Faults(execution_statuses=[500, 502])) as app:
        assets = run(app.url)
        assert app.counts["execution"] == 3
    assert assets[0].metadata["attempts"]["execute"] == 3


def test_5xx_exhausts_retries_and_4xx_is_not_retried():
    with FakeApp(socket_io=False, faults=Faults(execution_statuses=[503, 503, 503, 503])) as app:
        with pytest.raises(BackendError, match=r"HTTP 503.*after 3 attempts") as err:
            run(app.url)
        assert app.counts["execution"] == 3 and err.value.transient
    with FakeApp(socket_io=False, faults=Faults(execution_statuses=[403])) as app:
        with pytest.raises(BackendError, match="HTTP 403") as err:
            run(app.url)
        assert app.counts["execution"] == 1 and not err.value.transient


def test_schema_mismatch_refreshes_cached_schema_and_retries_once():
    new_schema = {"type": "object", "properties": {"caption": {"type": "string"}}, "required": ["caption"], "additionalProperties": False}

    def swap(app):  # the app is redeployed with a new schema right after the client cached the old one
        if app.counts["schema-input"] == 1:
            app.faults.execution_statuses = [422]
        else:
            app.input_schema = new_schema

    with FakeApp(socket_io=False) as app:
        app.on_input_schema = swap
        assets = run(app.url)
        assert app.bodies() == [{"prompt": PROMPT.prompt}, {"caption": PROMPT.prompt}]
        assert app.counts["schema-input"] == 2
    assert assets[0].metadata["input_fields"] == {"caption": "prompt"}


def test_dropped_socket_mid_execution_is_retried():
    events = []
    with FakeApp(faults=Faults(socket_drops=1)) as app:
        assets = run(app.url, progress=lambda f, m: events.append((f, m)))
        assert app.counts["socket-execute"] == 2 and app.counts["execution"] == 0
    assert assets[0].metadata["attempts"]["execute"] == 2 and assets[0].metadata["transport"] == "socket.io"
    # progress of someone else's request (99%) never reached us
    assert 0.99 not in [f for f, _ in events]
    assert any(f == 0.5 and "running 50%" in m for f, m in events)
    assert not any("step 50" in m for _, m in events)  # the app's own message text is not shown


def test_app_reported_failure_over_socket():
    with FakeApp(faults=Faults(socket_failures=["CUDA out of memory"])) as app:
        with pytest.raises(BackendError, match="reported FAILED with a message of 18 characters") as err:
            run(app.url)
        assert app.counts["socket-execute"] == 1
    assert "CUDA" not in str(err.value)  # the app's text goes to the log, not into the reason


def test_slow_answer_hits_the_total_deadline_then_the_circuit_opens():
    with FakeApp(socket_io=False, faults=Faults(execution_delay=5.0)) as app:
        started = time.monotonic()
        with pytest.raises(BackendError, match="deadline") as err:
            run(app.url, execution_timeout=1.0)
        assert time.monotonic() - started < 3.0 and err.value.transient
        started = time.monotonic()
        with pytest.raises(BackendError, match="^circuit open") as err:
            run(app.url, execution_timeout=1.0)
        assert time.monotonic() - started < 0.5
        assert "deadline" in str(err.value)  # the last failure is part of the reason
        assert app.counts["execution"] == 1


def test_malformed_and_huge_schemas_and_wrong_content_types():
    with FakeApp(faults=Faults(input_schema_body=b"<html>Bad gateway</html>")) as app:
        with pytest.raises(BackendError, match="input schema is not JSON .*24 bytes, looks like HTML") as err:
            run(app.url)
        assert "Bad gateway" not in str(err.value) and "<htm" not in str(err.value)
        assert app.counts["schema-input"] == 1  # not retried
    with FakeApp(faults=Faults(input_schema_body=b'{"type": "object", "description": "' + b"x" * 50_000 + b'"}')) as app:
        with pytest.raises(BackendError, match="over the 10000-byte cap"):
            run(app.url, max_schema_bytes=10_000)
    loop = {"definitions": {"A": {"$ref": "#/definitions/B"}, "B": {"$ref": "#/definitions/A"}}, "$ref": "#/definitions/A"}
    with FakeApp(input_schema=loop) as app:
        with pytest.raises(BackendError, match="recursive \\$ref loop"):
            run(app.url)
    # a manifest that is not JSON and an output schema that is broken are tolerated (outputs are sniffed)
    with FakeApp(faults=Faults(manifest_body=b"<html>hi</html>", manifest_content_type="text/html", output_schema_body=b"{nope")) as app:
        assets = run(app.url)
    assert assets[0].data.startswith(b"\x89PNG") and len(assets[0].metadata["warnings"]) == 2


def test_malformed_execution_json_and_wrong_magic_bytes():
    with FakeApp(socket_io=False, respond=lambda app, body: b'{"result": "data_blob_') as app:
        with pytest.raises(BackendError, match="execution output is neither JSON nor a Python literal"):
            run(app.url)
        assert app.counts["execution"] == 1
    html = b"<html><body>502 Bad Gateway</body></html>"
    with FakeApp(respond=lambda app, body: {"result": app.put(html, "image/png")}) as app:
        with pytest.raises(BackendError, match=r"no image in the app's output.*'result'.*content type image/png, 41 bytes, looks like HTML") as err:
            run(app.url)
        assert "Bad Gateway" not in str(err.value) and "3c68746d" not in str(err.value)


def test_resource_5xx_is_retried():
    with FakeApp(faults=Faults(resource_statuses=[500])) as app:
        assets = run(app.url)
        assert app.counts["resource"] == 2
    assert assets[0].metadata["attempts"]["resource"] == 2


def test_output_over_the_size_cap_is_refused_whole():
    big = png_bytes() + b"\0" * 300_000
    with FakeApp(respond=lambda app, body: {"result": app.put(big, "image/png")}) as app:
        with pytest.raises(BackendError, match="over the 100000-byte cap"):
            run(app.url, max_output_bytes=100_000)
    with FakeApp(respond=lambda app, body: {"result": app.put(big, "image/png")}, faults=Faults(resource_chunked=True)) as app:
        with pytest.raises(BackendError, match="over the 100000-byte cap"):
            run(app.url, max_output_bytes=100_000)
    with FakeApp(respond=lambda app, body: {"result": base64.b64encode(big).decode()}) as app:
        with pytest.raises(BackendError, match="over the 100000-byte cap"):
            run(app.url, max_output_bytes=100_000)


def test_slow_loris_resource_stops_at_the_deadline():
    with FakeApp(respond=lambda app, body: {"result": app.put(png_bytes(32), "image/png")}, faults=Faults(resource_trickle=0.05)) as app:
        started = time.monotonic()
        with pytest.raises(BackendError, match="deadline .*during resource") as err:
            run(app.url, request_timeout=1.0, execution_timeout=1.5)
        assert time.monotonic() - started < 3.0
    assert "glTF" not in str(err.value)


# ---------------------------------------------------------------------------------------------- breaker and fallback


def test_dead_app_retries_connection_then_circuit_opens_and_half_opens():
    url = dead_url()
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect.*after 2 attempts"):
        run(url, retries=2, breaker_reset_seconds=0.5)
    assert time.monotonic() - started < 2.0
    with pytest.raises(BackendError, match="^circuit open"):
        run(url, retries=2, breaker_reset_seconds=0.5)
    time.sleep(0.6)
    with pytest.raises(BackendError, match="cannot connect"):  # the half-open trial goes out, fails, reopens
        run(url, retries=1, breaker_reset_seconds=0.5)
    with pytest.raises(BackendError, match="^circuit open"):
        run(url, retries=1, breaker_reset_seconds=0.5)


def test_a_name_that_does_not_resolve_is_not_retried():
    """Offline, or a typo in ATELIER_TEXT_TO_IMAGE_APP: the resolver's "no such name" does not change on a
    second ask, so the request fails at once instead of paying the backoff (.invalid never resolves, RFC 6761)."""
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect") as err:
        run("http://atelier-no-such-app.invalid:8765", retries=3, backoff_initial=1.0)
    assert "attempts" not in str(err.value)
    assert time.monotonic() - started < 1.0


def test_soft_failures_open_the_circuit_after_the_threshold():
    with FakeApp(socket_io=False, faults=Faults(execution_statuses=[500] * 10)) as app:
        for _ in range(2):
            with pytest.raises(BackendError, match="HTTP 500"):
                run(app.url, retries=1, breaker_failures=2)
        with pytest.raises(BackendError, match="^circuit open"):
            run(app.url, retries=1, breaker_failures=2)
        assert app.counts["execution"] == 2


def test_fallback_to_sketch_records_the_openfabric_reason(monkeypatch):
    monkeypatch.setenv("ATELIER_TEXT_TO_IMAGE_APP", dead_url())
    monkeypatch.setenv("ATELIER_OPENFABRIC_RETRIES", "2")
    monkeypatch.setenv("ATELIER_OPENFABRIC_BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("ATELIER_OPENFABRIC_CONNECT_TIMEOUT", "1")
    reset_settings()
    try:
        messages = []
        assets, attempts = generate_with_fallback("image", ["openfabric", "sketch"], ImageRequest(prompt="a red kite", width=128, height=128),
                                                  lambda f, m: messages.append(m))
    finally:
        reset_settings()
    assert assets[0].backend == "sketch" and assets[0].data.startswith(b"\x89PNG")
    assert [(a.backend, a.ok) for a in attempts] == [("openfabric", False), ("sketch", True)]
    assert "cannot connect" in attempts[0].reason and "after 2 attempts" in attempts[0].reason
    assert any("openfabric failed" in m for m in messages)


def test_backend_class_serves_both_kinds(monkeypatch, image_node, model_node):
    _, image_server = image_node
    _, model_server = model_node
    monkeypatch.setenv("ATELIER_TEXT_TO_IMAGE_APP", image_server.url)
    monkeypatch.setenv("ATELIER_IMAGE_TO_3D_APP", model_server.url)
    reset_settings()
    try:
        image = load_backend("openfabric", "image").generate(ImageRequest(prompt="a teapot", width=128, height=128, seed=1))
        model = load_backend("openfabric", "model").generate(MeshRequest(image=image[0].data))
    finally:
        reset_settings()
    assert image[0].backend == "openfabric" and image[0].kind == "image"
    assert model[0].backend == "openfabric" and model[0].kind == "model" and model[0].data[:4] == b"glTF"
    with pytest.raises(BackendError, match="got a MeshRequest"):
        load_backend("openfabric", "image").generate(MeshRequest(image=b""))


def test_output_schema_guides_but_content_decides():
    # the schema calls the field an image, but it holds a GLB: a model request still finds it, an image request does not
    model = glb_bytes()
    out = {"type": "object", "properties": {"picture": {"type": "string", "format": "binary", "contentMediaType": "image/png"}}}
    schema = {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}, "required": ["image"]}
    with FakeApp(input_schema=schema, output_schema=out, respond=lambda app, body: {"picture": app.put(model)}) as app:
        assets = run(app.url, "model", ToolValues(image=png_bytes()))
        assert assets[0].mime == "model/gltf-binary" and "expected to hold a image" in assets[0].metadata["warnings"][0]
    with FakeApp(output_schema=IMAGE_OUTPUT, respond=lambda app, body: {"result": app.put(model)}) as app:
        with pytest.raises(BackendError, match="no image in the app's output.*found result=glb"):
            run(app.url)


def test_local_node_speaks_the_proxy_protocol(image_node):
    """A plain python-socketio client, used the way openfabric_pysdk's Proxy uses it."""
    import json
    import threading
    import zlib

    import socketio

    _node, server = image_node
    got: dict[str, list] = {"submitted": [], "progress": [], "response": []}
    finished = threading.Event()
    client = socketio.Client(reconnection=False)
    for event in got:
        def handler(data, _event=event):
            got[_event].append(data)
            if _event == "response":
                finished.set()
        client.on(event, handler, namespace="/app")
    client.connect(server.url, transports="websocket", namespaces=["/app"], wait_timeout=5)
    try:
        payload = zlib.compress(json.dumps({"body": {"prompt": "a kettle"}, "header": {"uid": "u1", "rid": "r1"}}).encode())
        client.emit("execute", data=(payload, True), namespace="/app")
        assert finished.wait(30)
    finally:
        client.disconnect()
    assert got["submitted"][0]["rid"] == "r1" and got["submitted"][0]["uid"] == "u1"
    assert got["progress"] and all(p["rid"] == "r1" for p in got["progress"])
    response = got["response"][0]
    assert response["ray"]["status"] == "COMPLETED" and response["ray"]["finished"] is True
    assert response["output"]["result"].startswith("data_blob_")


def test_node_main_serves_until_stopped(tmp_path):
    import os
    import subprocess
    import sys

    import httpx

    from openfabric_fakes import dead_url

    port = int(dead_url().rsplit(":", 1)[1])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "agent.openfabric_node", "text-to-image", "--port", str(port)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": root})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                manifest = httpx.get(f"http://127.0.0.1:{port}/manifest", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "node did not come up"
                time.sleep(0.2)
        assert manifest["name"] == "atelier-local-text-to-image" and "sketch" in manifest["description"]
        schema = httpx.get(f"http://127.0.0.1:{port}/schema", params={"type": "input"}, timeout=2).json()
        # the default shape is the real apps' one: marshmallow-jsonschema with a top-level $ref
        assert schema["$ref"] == "#/definitions/InputClass" and set(schema["definitions"]["InputClass"]["properties"]) == {"prompt", "attachments"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_slow_socket_answer_stops_at_the_deadline():
    with FakeApp(faults=Faults(execution_delay=5.0)) as app:
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"deadline \(during execution \(socket.io\)\)"):
            run(app.url, execution_timeout=1.0)
        assert time.monotonic() - started < 3.0
        assert app.counts["socket-execute"] == 1 and app.counts["execution"] == 0
