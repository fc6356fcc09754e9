"""Openfabric as the real apps answer (marshmallow-jsonschema schemas with $ref and resource fields, resource
ids, Python-repr answers on REST, pulse events, empty resources, locked apps), end to end.

The whole creation runs through the agent graph (decide -> text_to_image -> image_to_3d -> memory) against fake
apps that speak that contract (tests/support/openfabric_fakes.py), over our socket.io client, REST and the SDK's Proxy;
the local node's default shape is checked against the same client; and the SDK Proxy's defects that keep it
out of the default are shown.
"""
from __future__ import annotations

import base64
import gc
import inspect
import threading
import time
import weakref
from pathlib import Path

import httpx
import pytest

from agent.openfabric_node import LocalNode, RunningServer, serve_in_thread
from models.settings import reset_settings
from tools.backends import generate_with_fallback, load_backend
from tools.backends.base import BackendError, ImageRequest, MeshRequest
from tools.openfabric.answers import parse_execution_answer
from tools.openfabric.client import generate_sync, reset_state
from tools.openfabric.config import OpenfabricSettings, resolve_app
from tools.openfabric.errors import BadResponse, GenerationFailed, TooLarge
from tools.openfabric.output import extract
from tools.openfabric.protocol import IMAGE_TO_3D, TEXT_TO_IMAGE
from tools.openfabric.schema_mapping import ToolValues, build_input, field_names
from tools.settings import get_settings

from openfabric_fakes import (  # noqa: F401 (fresh_openfabric_state is an autouse fixture)
    EMPTY_SHA256,
    MARSHMALLOW_3D_INPUT,
    MARSHMALLOW_3D_OUTPUT,
    MARSHMALLOW_IMAGE_OUTPUT,
    MARSHMALLOW_TEXT_INPUT,
    FakeApp,
    Faults,
    dead_url,
    fast_settings,
    fresh_openfabric_state,
    glb_bytes,
    marshmallow_image_to_3d,
    marshmallow_text_to_image,
    png_bytes,
    sha,
)

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-token"


def fast(**overrides) -> OpenfabricSettings:
    # whole creations through the graph: more headroom than the client's fault tests
    return fast_settings(**{"connect_timeout": 2.0, "request_timeout": 5.0, "execution_timeout": 30.0, **overrides})


def use_apps(monkeypatch, image_url: str, model_url: str, transport: str, token: str | None = None) -> None:
    """Point the whole app at the fakes; the backend order is set here, not taken from the defaults."""
    monkeypatch.setenv("ATELIER_TEXT_TO_IMAGE_APP", image_url)
    monkeypatch.setenv("ATELIER_IMAGE_TO_3D_APP", model_url)
    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "openfabric,sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "openfabric,relief")
    monkeypatch.setenv("ATELIER_OPENFABRIC_TRANSPORT", transport)
    monkeypatch.setenv("ATELIER_OPENFABRIC_RETRIES", "3")
    monkeypatch.setenv("ATELIER_OPENFABRIC_BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("ATELIER_OPENFABRIC_CONNECT_TIMEOUT", "3")
    if token:
        monkeypatch.setenv("ATELIER_OPENFABRIC_TOKEN", token)
    else:
        monkeypatch.delenv("ATELIER_OPENFABRIC_TOKEN", raising=False)
    reset_settings()


def create(text: str, thread: str) -> dict:
    """One creation through the agent graph, as `atelier create` runs it (router decisions, no LLM rewrite)."""
    from agent.cli import run_turn
    from agent.graph import build_graph
    from memory.session import checkpointer

    graph = build_graph(checkpointer=checkpointer())
    config = {"configurable": {"thread_id": thread, "user_id": "ann", "enhance": False, "decision_policy": "router"}}
    return run_turn(graph, text, config)


def stored(path: str) -> bytes:
    return Path(path).read_bytes()


# ---------------------------------------------------------------------------------------------- the whole creation


@pytest.mark.parametrize("transport", ["socket", "rest"])
def test_whole_creation_through_marshmallow_apps(monkeypatch, data_dir, transport):
    """Both apps locked with a token; the configured token goes with every call."""
    fake_transport = transport
    with marshmallow_text_to_image(token=TOKEN) as image_app, marshmallow_image_to_3d(token=TOKEN) as model_app:
        use_apps(monkeypatch, image_app.url, model_app.url, transport, TOKEN)
        result = create("a paper crane on a wooden desk", f"t-{transport}")
    state = result["state"]
    assert [s["tool"] for s in result["steps"]] == ["text_to_image", "image_to_3d"]
    assert state["image"]["backend"] == "openfabric" and state["model"]["backend"] == "openfabric"
    assert [s["attempts"][0]["ok"] for s in result["steps"]] == [True, True]

    # the input the apps got: only fields their $ref schemas declare, the prompt as text, the image as bytes
    ((sent_via, image_body),) = image_app.executions
    assert sent_via == fake_transport and image_body == {"prompt": "a paper crane on a wooden desk"}
    ((sent_via, model_body),) = model_app.executions
    assert sent_via == fake_transport and set(model_body) == {"input_image"}
    assert not model_body["input_image"].startswith("data_")  # never a resource id

    # the bytes stored are the bytes the apps returned, and the 3D app was sent the generated image itself
    made_image, made_model = image_app.made[0], model_app.made[0]
    assert sha(stored(state["image"]["path"])) == sha(made_image) == state["image"]["sha256"]
    assert sha(stored(state["model"]["path"])) == sha(made_model) == state["model"]["sha256"]
    assert model_app.received == [made_image]

    # resources were fetched by the whole id the app answered (…/resources on REST, …/executions/<qid> on socket.io)
    tail = "/resources" if transport == "rest" else "/executions/"
    assert all(tail in ref for ref in image_app.resources) and image_app.counts["resource"] == 1
    meta = state["image"]["meta"]
    assert meta["transport"] == ("socket.io" if transport == "socket" else "rest")
    assert meta["field"] == "result" and meta["source"] == "resource" and meta["input_fields"] == {"prompt": "prompt"}
    assert "warnings" not in meta  # ids hash to their bytes; nothing odd seen

    # the token went with every request, REST and socket.io alike, and nothing was refused
    assert image_app.authorizations and all(seen in (f"Bearer {TOKEN}", TOKEN) for _, seen in image_app.authorizations)
    assert model_app.authorizations and all(seen in (f"Bearer {TOKEN}", TOKEN) for _, seen in model_app.authorizations)
    assert not image_app.refused and not model_app.refused
    reset_settings()


def test_empty_resource_falls_back_to_the_local_backend_with_the_reason(monkeypatch, data_dir):
    with marshmallow_text_to_image(fail=True) as image_app, marshmallow_image_to_3d() as model_app:
        use_apps(monkeypatch, image_app.url, model_app.url, "socket")
        result = create("a small lighthouse on a rock", "t-empty")
    state = result["state"]
    image_step, model_step = result["steps"]
    assert state["image"]["backend"] == "sketch" and image_step["backend"] == "sketch"
    failed = image_step["attempts"][0]
    assert failed["backend"] == "openfabric" and not failed["ok"]
    assert "generation failed" in failed["reason"] and "empty resource" in failed["reason"] and EMPTY_SHA256[:8] in failed["reason"]
    assert image_step["result"]["fallbacks"][0]["reason"] == failed["reason"]
    assert image_app.counts["socket-execute"] == 1 and image_app.counts["resource"] == 0  # not retried, nothing fetched
    # the 3D app then got the sketch's bytes - what was stored - and its model is what is stored now
    assert model_app.received == [stored(state["image"]["path"])]
    assert state["model"]["backend"] == "openfabric" and sha(stored(state["model"]["path"])) == sha(model_app.made[0])
    # the reply says it once, calmly (issue 20): the placeholder hint, not the upstream reason, which stays in the
    # step's attempts and fallbacks above (the studio's step details, create --json, the history details)
    reply = state["messages"][-1].content
    assert "generation failed" not in reply and "127.0.0.1" not in reply and "atelier models pull sd-turbo" in reply
    reset_settings()


def test_sdk_proxy_transport_runs_the_creation(monkeypatch):
    """The SDK's Proxy as the transport (ATELIER_OPENFABRIC_TRANSPORT=sdk), through the backends."""
    with marshmallow_text_to_image() as image_app, marshmallow_image_to_3d() as model_app:
        use_apps(monkeypatch, image_app.url, model_app.url, "sdk")
        try:
            before = {t.ident for t in threading.enumerate()}
            events = []
            image = load_backend("openfabric", "image").generate(ImageRequest(prompt="a teapot", width=64, height=64),
                                                                 lambda f, m: events.append((f, m)))
            model = load_backend("openfabric", "model").generate(MeshRequest(image=image[0].data, image_mime=image[0].mime))
        finally:
            reset_settings()
        assert image_app.executions[0][0] == "socket" and model_app.executions[0][0] == "socket"
    assert image[0].metadata["transport"] == "sdk" and sha(image[0].data) == sha(image_app.made[0])
    assert model_app.received == [image[0].data] and sha(model[0].data) == sha(model_app.made[0])
    assert any(f is not None and 0 < f < 1 for f, _ in events)  # progress arrived through the Proxy's callbacks
    # our wrapper disconnects each Proxy: none of its threads is left running
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any("__run" in t.name or "__check_state" in t.name for t in threading.enumerate() if t.ident not in before):
        time.sleep(0.1)
    assert not [t.name for t in threading.enumerate() if t.ident not in before and ("__run" in t.name or "__check_state" in t.name)]


# ---------------------------------------------------------------------------------------------- locked apps


def test_locked_app_without_a_token_is_unauthorized_and_not_retried(monkeypatch):
    with marshmallow_text_to_image(token=TOKEN) as app:
        use_apps(monkeypatch, app.url, dead_url(), "auto")
        try:
            assets, attempts = generate_with_fallback("image", ["openfabric", "sketch"], ImageRequest(prompt="a red kite", width=64, height=64))
        finally:
            reset_settings()
        assert sum(app.refused.values()) == 1 and app.counts["execution"] == 0  # one refused call, no retry, nothing executed
    assert assets[0].backend == "sketch"
    reason = attempts[0].reason
    assert not attempts[0].ok and "unauthorized (HTTP 401)" in reason and "no token is set (ATELIER_OPENFABRIC_TOKEN)" in reason
    assert "attempts" not in reason


def test_wrong_token_and_socket_unauthorized_are_said_plainly():
    with marshmallow_text_to_image(token=TOKEN) as app:
        app.locked = {"socket.io"}  # REST open, socket.io locked: the refusal comes from the socket.io connect
        with pytest.raises(BackendError) as err:
            generate_sync(app.url, "image", ToolValues(prompt="a kite"), settings=fast(transport="socket", token="wrong"))
        assert "unauthorized (UNAUTHORIZED)" in str(err.value) and "token in ATELIER_OPENFABRIC_TOKEN was refused" in str(err.value)
        assert not err.value.transient and app.refused["socket.io"] == 1 and app.counts["socket-execute"] == 0
        # in auto mode an UNAUTHORIZED socket is not "socket.io unavailable": no silent switch to REST
        with pytest.raises(BackendError, match="unauthorized"):
            generate_sync(app.url, "image", ToolValues(prompt="a kite"), settings=fast(transport="auto", token="wrong"))
        assert app.counts["execution"] == 0
        # the breaker does not count a refusal: the app is alive (a later request with the right token goes out)
        assets = generate_sync(app.url, "image", ToolValues(prompt="a kite"), settings=fast(transport="socket", token=TOKEN))
    assert sha(assets[0].data) == sha(app.made[0])


def test_no_token_configured_sends_no_authorization():
    with marshmallow_text_to_image() as app:
        generate_sync(app.url, "image", ToolValues(prompt="a kite"), settings=fast(transport="socket"))
        generate_sync(app.url, "image", ToolValues(prompt="a kite"), settings=fast(transport="rest"))
    assert {what for what, _ in app.authorizations} >= {"manifest", "schema", "resource", "socket.io", "execution"}
    assert all(seen is None for _, seen in app.authorizations)


# ---------------------------------------------------------------------------------------------- answers in repr


def test_repr_answers_are_read_as_literals():
    assert parse_execution_answer(b"{'result': 'data_blob_ab/resources', 'video_object': None, 'ok': True}", "text/html", 1000) == {
        "result": "data_blob_ab/resources", "video_object": None, "ok": True}
    assert parse_execution_answer(b'{"result": null}', "application/json", 1000) == {"result": None}
    # JSON text that holds the repr (a Flask view that jsonified str(output))
    assert parse_execution_answer(b'"{\'result\': \'x\'}"', "application/json", 1000) == {"result": "x"}
    assert parse_execution_answer(b"  {'a': [1, 2.5, (3, 'b')]}\n", "", 1000) == {"a": [1, 2.5, (3, "b")]}


@pytest.mark.parametrize("body", [
    b"__import__('os').system('touch /tmp/atelier-pwned')",
    b"{'result': __import__('os').getcwd()}",
    b"().__class__.__base__.__subclasses__()",
    b"{'result': open('/etc/passwd').read()}",
    b"(lambda: 1)()",
    b"{'a': f'{1+1}'}",
    b"{1, 2, 3}",
    b"{'a': b'bytes'}",
    b"{'a': 1j}",
    b"{1: 'int key'}",
    b"[" * 5000 + b"]" * 5000,
    b"{'unterminated': ",
    b"\xff\xfe not text",
])
def test_hostile_answers_are_refused(body):
    with pytest.raises(BadResponse):
        parse_execution_answer(body, "text/html", 1 << 20)
    assert not Path("/tmp/atelier-pwned").exists()


def test_oversize_literal_is_refused_before_parsing():
    body = b"{'result': '" + b"A" * 5000 + b"'}"
    with pytest.raises(TooLarge, match="over the 4096-byte cap"):
        parse_execution_answer(body, "text/html", 4096)


def test_hostile_rest_answer_through_the_client():
    hostile = "__import__('os').system('touch /tmp/atelier-pwned-rest')"
    with FakeApp(input_schema=MARSHMALLOW_TEXT_INPUT, output_schema=MARSHMALLOW_IMAGE_OUTPUT, socket_io=False,
                 respond=lambda app, body: hostile) as app:
        with pytest.raises(BackendError, match="neither JSON nor a Python literal"):
            generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="rest"))
        assert app.counts["execution"] == 1
    assert not Path("/tmp/atelier-pwned-rest").exists()
    big = "{'result': '" + "A" * 3000 + "'}"
    with FakeApp(input_schema=MARSHMALLOW_TEXT_INPUT, socket_io=False, respond=lambda app, body: big) as app:
        with pytest.raises(BackendError, match="over the 2048-byte cap for Python literals"):
            generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="rest", max_repr_bytes=2048))


# ---------------------------------------------------------------------------------------------- schemas, ids, hosts


def test_marshmallow_schemas_map_to_the_declared_fields():
    assert field_names(MARSHMALLOW_TEXT_INPUT) == ["prompt", "attachments"]
    mapped = build_input(MARSHMALLOW_TEXT_INPUT, ToolValues(prompt="a fox", negative_prompt="blur", seed=3, width=512, height=512), kind="image")
    assert mapped.body == {"prompt": "a fox"}  # no width/seed: the app does not declare them
    image = png_bytes(8)
    mapped = build_input(MARSHMALLOW_3D_INPUT, ToolValues(image=image), kind="model")
    assert base64.b64decode(mapped.body["input_image"]) == image and mapped.assigned == {"input_image": "image"}


def test_resource_ids_and_the_empty_resource():
    image, model = png_bytes(8), glb_bytes()
    fetched: list[str] = []
    blobs = {f"data_blob_{sha(image)}/resources": image, f"data_WebGL_{sha(model)}/executions/{'ab' * 16}": model}

    async def fetch(ref, path):
        fetched.append(ref)
        return blobs[ref], "application/octet-stream"

    import asyncio

    found = asyncio.run(extract({"result": f"data_blob_{sha(image)}/resources"}, MARSHMALLOW_IMAGE_OUTPUT, fetch, max_bytes=1 << 20))
    assert [(a.kind, a.field, a.source) for a in found.assets] == [("image", "result", "resource")] and found.assets[0].data == image
    output = {"generated_object": f"data_WebGL_{sha(model)}/executions/{'ab' * 16}", "video_object": None}
    found = asyncio.run(extract(output, MARSHMALLOW_3D_OUTPUT, fetch, max_bytes=1 << 20))
    assert [(a.kind, a.format) for a in found.assets] == [("model", "glb")] and not found.problems
    assert fetched == [f"data_blob_{sha(image)}/resources", f"data_WebGL_{sha(model)}/executions/{'ab' * 16}"]  # the whole id
    empty = {"generated_object": f"data_WebGL_{EMPTY_SHA256}/resources", "video_object": None}
    found = asyncio.run(extract(empty, MARSHMALLOW_3D_OUTPUT, fetch, max_bytes=1 << 20))
    assert found.assets == [] and "empty resource" in found.failed[0] and len(fetched) == 2  # not fetched


def test_a_resource_that_does_not_match_its_hash_is_flagged():
    image = png_bytes(8)
    with FakeApp(input_schema=MARSHMALLOW_TEXT_INPUT, output_schema=MARSHMALLOW_IMAGE_OUTPUT, shape="marshmallow") as app:
        app.respond = lambda app, body: {"result": app.put_resource(image, "blob")}
        assets = generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="rest"))
        assert not assets[0].metadata.get("warnings")
        other = png_bytes(9)

        def swapped(app, body):
            ref = app.put_resource(image, "blob")
            app.resources[ref] = (other, "image/png")  # the node serves other bytes than the id says
            return {"result": ref}

        app.respond = swapped
        reset_state()
        assets = generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="rest"))
    assert assets[0].data == other and "does not hash to the sha256 in its id" in assets[0].metadata["warnings"][0]


def test_default_apps_build_dashless_hosts():
    settings = get_settings()
    hosts = {resolve_app(settings.text_to_image_app).host, resolve_app(settings.image_to_3d_app).host}
    for host in hosts:
        label, _, domain = host.partition(".")
        assert domain == "node3.openfabric.network" and len(label) == 32 and "-" not in label
    assert resolve_app("f0997a01-d6d3-a5fe-53d8-561300318557").base_url == resolve_app("f0997a01d6d3a5fe53d8561300318557").base_url
    assert resolve_app("f0997a01-d6d3-a5fe-53d8-561300318557", "node9.example.org").host == "f0997a01d6d3a5fe53d8561300318557.node9.example.org"
    with pytest.raises(ValueError, match="unknown Openfabric transport"):
        OpenfabricSettings(transport="carrier-pigeon")


def test_stalled_socket_execution_is_given_up():
    with marshmallow_text_to_image(faults=Faults(execution_delay=4.0)) as app:
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"no update from the app for \d+\.\ds \(stall timeout 1s\)"):
            generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="socket", stall_timeout=1.0))
        assert time.monotonic() - started < 3.9  # the app answers only after 4 s


def test_a_lost_response_is_recovered_with_restore(monkeypatch):
    """The app finished but its `response` never reached us: after a quiet spell the client asks with `restore`
    (the SDK's Proxy does the same after 5 s; shortened here) and takes the output from the answer."""
    from tools.openfabric.transports import socket_io as client_module

    monkeypatch.setattr(client_module, "RESTORE_AFTER", 0.3)
    with marshmallow_text_to_image(faults=Faults(response_by_restore_only=True)) as app:
        assets = generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="socket", stall_timeout=5.0))
        assert app.counts["restore"] >= 1 and app.counts["socket-execute"] == 1
    assert sha(assets[0].data) == sha(app.made[0]) and assets[0].metadata["transport"] == "socket.io"


# ---------------------------------------------------------------------------------------------- the local node


@pytest.fixture(scope="module")
def marshmallow_nodes():
    image_node = LocalNode(TEXT_TO_IMAGE, load_backend("sketch", "image"), backend_name="sketch", pulse_seconds=0.2)
    model_node = LocalNode(IMAGE_TO_3D, load_backend("relief", "model"), backend_name="relief", pulse_seconds=0.2)
    servers = serve_in_thread(image_node.make_app()), serve_in_thread(model_node.make_app())
    yield (image_node, servers[0]), (model_node, servers[1])
    for server in servers:
        server.stop()


@pytest.mark.parametrize("transport", ["socket", "rest", "sdk"])
def test_local_node_default_shape_with_every_transport(marshmallow_nodes, transport):
    (image_node, image_server), (model_node, model_server) = marshmallow_nodes
    image = generate_sync(image_server.url, "image", ToolValues(prompt="a kettle", width=64, height=64), settings=fast(transport=transport))
    model = generate_sync(model_server.url, "model", ToolValues(image=image[0].data, image_mime="image/png"), settings=fast(transport=transport))
    assert image[0].metadata["input_fields"] == {"prompt": "prompt"}
    assert image_node.store.get(f"data_blob_{sha(image[0].data)}/resources")[0] == image[0].data
    assert model[0].kind == "model" and model[0].data[:4] == b"glTF"
    assert model_node.store.get(f"data_WebGL_{sha(model[0].data)}/resources")[0] == model[0].data


def test_local_node_answers_like_the_real_apps(marshmallow_nodes):
    (_node, server), (_model_node, model_server) = marshmallow_nodes
    schema = httpx.get(f"{server.url}/schema", params={"type": "output"}, timeout=5).json()
    assert schema["$ref"] == "#/definitions/OutputClass" and schema["definitions"]["OutputClass"]["properties"]["result"]["is_resource"] is True
    answer = httpx.post(f"{server.url}/execution", json={"prompt": "a kettle"}, timeout=30)
    assert answer.status_code == 200 and answer.text.startswith("{'result': 'data_blob_") and answer.text.endswith("/resources'}")
    reid = answer.text.split("'")[3]
    assert httpx.get(f"{server.url}/resource", params={"reid": reid}, timeout=5).content[:8] == b"\x89PNG\r\n\x1a\n"
    answer = httpx.post(f"{model_server.url}/execution", json={"input_image": reid}, timeout=30)
    assert answer.status_code == 400 and "resource id" in answer.json()["error"]  # the app wants bytes, not an id


def test_local_node_pulses_and_restore_keep_a_slow_execution_alive():
    """A backend slower than the stall timeout: the node's pulses keep our client waiting; `restore` answers the SDK."""
    import socketio

    class Slow:
        name = "slow"

        def generate(self, request, progress):
            time.sleep(2.0)
            return load_backend("sketch", "image").generate(ImageRequest(prompt=request.prompt, width=64, height=64))

    node = LocalNode(TEXT_TO_IMAGE, Slow(), pulse_seconds=0.2)
    with RunningServer(node.make_app()) as server:
        assets = generate_sync(server.url, "image", ToolValues(prompt="a slow kettle"), settings=fast(transport="socket", stall_timeout=1.0))
        assert assets[0].data.startswith(b"\x89PNG")
        got: dict[str, list] = {"submitted": [], "pulse": [], "restore": [], "response": []}
        client = socketio.Client(reconnection=False)
        for event in got:
            client.on(event, lambda data, _e=event: got[_e].append(data), namespace="/app")
        client.connect(server.url, transports="websocket", namespaces=["/app"], wait_timeout=5)
        try:
            import json
            import zlib

            client.emit("execute", (zlib.compress(json.dumps({"body": {"prompt": "k"}, "header": {"uid": "u", "rid": "r1"}}).encode()), True), namespace="/app")
            deadline = time.monotonic() + 10
            while not got["submitted"] and time.monotonic() < deadline:
                time.sleep(0.05)
            client.emit("restore", got["submitted"][0]["qid"], namespace="/app")
            while not got["response"] and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            client.disconnect()
    assert got["pulse"] and all(p["rid"] == "r1" for p in got["pulse"])
    assert got["restore"] and "output" not in got["restore"][0]  # still running: the SDK must not take it as finished
    response = got["response"][0]
    assert response["ray"]["status"] == "COMPLETED" and "output_ts" in response
    assert response["output"]["result"].startswith("data_blob_") and f"/executions/{got['submitted'][0]['qid']}" in response["output"]["result"]


def test_local_node_failed_generation_answers_the_empty_resource():
    class Broken:
        name = "broken"

        def generate(self, request, progress):
            raise BackendError("out of paint", backend="broken")

    node = LocalNode(TEXT_TO_IMAGE, Broken())
    with RunningServer(node.make_app()) as server:
        for transport in ("rest", "socket"):
            with pytest.raises(BackendError, match="generation failed: field 'result' is an empty resource") as err:
                generate_sync(server.url, "image", ToolValues(prompt="x"), settings=fast(transport=transport))
            assert err.value.transient and isinstance(err.value.__cause__, GenerationFailed)  # the next backend may well work
            reset_state()


def test_local_node_with_a_token():
    node = LocalNode(TEXT_TO_IMAGE, load_backend("sketch", "image"), token=TOKEN)
    with RunningServer(node.make_app()) as server:
        assert httpx.get(f"{server.url}/manifest", timeout=5).status_code == 401
        with pytest.raises(BackendError, match="unauthorized"):
            generate_sync(server.url, "image", ToolValues(prompt="x"), settings=fast(transport="socket"))
        reset_state()
        for transport in ("socket", "rest"):
            assets = generate_sync(server.url, "image", ToolValues(prompt="x"), settings=fast(transport=transport, token=TOKEN))
            assert assets[0].data.startswith(b"\x89PNG")


# ---------------------------------------------------------------------------------------------- the SDK's Proxy


def test_sdk_proxy_defects_that_keep_it_out_of_the_default():
    """openfabric_pysdk 0.2.9's Proxy, used as its docs show. What it does wrong, each checked:
    1. it cannot send a token: its constructor takes (url, tag) only, and it connects with no headers or auth;
    2. against an app that is down, the constructor blocks ~3 s, then returns a Proxy that is not connected;
    3. its two non-daemon threads keep running after the last reference is dropped: `__del__` never runs
       (the threads hold the Proxy), so they reconnect forever and hold the interpreter open;
    4. a request on that Proxy fails with socket.io's BadNamespaceError - nothing says the app is unreachable;
    5. results are polled: `ExecutionResult.wait()` sleeps in 0.1 s steps (benchmarks/openfabric_transports.py).
    """
    from openfabric_pysdk.helper.proxy import ExecutionResult, Proxy
    from socketio.exceptions import BadNamespaceError

    assert list(inspect.signature(Proxy.__init__).parameters) == ["self", "url", "tag"]
    assert "time.sleep(0.1)" in inspect.getsource(ExecutionResult.wait)
    before = {t.ident for t in threading.enumerate()}
    started = time.monotonic()
    proxy = Proxy(dead_url(), "dead")
    blocked = time.monotonic() - started
    assert blocked >= 2.5 and not proxy.is_connected()
    with pytest.raises(BadNamespaceError):
        proxy.request({"prompt": "x"}, "u")
    ref = weakref.ref(proxy)
    del proxy
    gc.collect()
    leaked = [t for t in threading.enumerate() if t.ident not in before]
    try:
        assert ref() is not None, "the Proxy was collected (defect fixed upstream?)"
        assert len(leaked) >= 2 and all(t.is_alive() and not t.daemon for t in leaked)
    finally:
        if ref() is not None:
            ref().disconnect()  # only an explicit disconnect stops the threads
        for thread in leaked:
            thread.join(3)
    assert not any(t.is_alive() for t in leaked)


def test_sdk_transport_refuses_a_token_and_reports_a_dead_app():
    with marshmallow_text_to_image(token=TOKEN) as app:
        with pytest.raises(BackendError, match="Proxy cannot send a token"):
            generate_sync(app.url, "image", ToolValues(prompt="x"), settings=fast(transport="sdk", token=TOKEN))
    with pytest.raises(BackendError, match="cannot connect|could not connect"):
        generate_sync(dead_url(), "image", ToolValues(prompt="x"), settings=fast(transport="sdk", retries=1))
