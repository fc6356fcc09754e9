"""Configurable fake Openfabric apps for the client tests (loopback only, started in a background thread).

A FakeApp serves the Openfabric protocol (manifest, schema, REST /execution, /resource, socket.io /app)
with whatever schemas and outputs a test gives it, records what it was sent, and injects faults:
HTTP error statuses, slow answers, dropped sockets, malformed or huge documents, slow-loris bodies,
wrong bytes and content types.

Two answer shapes. "json" (the friendlier one, used by most tests: other apps answer in other shapes) and
"marshmallow", the contract of the real apps (openfabric-pysdk + marshmallow-jsonschema), built by
`marshmallow_text_to_image` / `marshmallow_image_to_3d`:
  - schemas {"$schema", "definitions": {"InputClass": {...}}, "$ref": "#/definitions/InputClass"}, resource
    fields {"is_resource": true, "resource_type": "data", "resource_encoding": "blob" | "WebGL", "type": [...]};
  - text-to-image takes {"prompt", "attachments": [str]} and answers {"result": "data_blob_<sha256>/resources"};
    image-to-3D takes {"input_image": base64 or data URL} and answers
    {"generated_object": "data_WebGL_<sha256>/resources", "video_object": None};
  - over socket.io the ids end in /executions/<32 hex>; bytes come from GET /resource?reid=<the whole id>;
  - POST /execution answers repr(output) (single quotes, None), not JSON;
  - socket.io: `submitted`, then `pulse` and `progress`, then `response` {output, ray, output_ts};
  - a failed generation answers the id of empty content (sha256 e3b0c442...);
  - with `token` set the app is locked: 401 on HTTP, UNAUTHORIZED on the socket.io connect.

A hostile app (tests/integration/test_openfabric_outbound.py): `redirects` answers a path with a redirect to anywhere,
`error_body` puts text of the test's choosing into every error answer, and an app can listen on another local
address than 127.0.0.1 (`host`), so that "the app is not on loopback" can be tested on one machine.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import socket
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import socketio
from aiohttp import web

from agent.openfabric_node import RunningServer, openfabric_app
from tools.openfabric.protocol import EMPTY_SHA256 as EMPTY_SHA256, marshmallow_document, marshmallow_resource_field as resource_field


def fast_settings(**overrides):
    """Openfabric client settings with short timeouts and backoff, so fault tests take milliseconds."""
    from tools.openfabric.config import OpenfabricSettings

    values = dict(connect_timeout=1.0, request_timeout=2.0, execution_timeout=8.0, retries=3, backoff_initial=0.01,
                  backoff_max=0.05, breaker_failures=3, breaker_reset_seconds=30.0, schema_ttl=60.0)
    values.update(overrides)
    return OpenfabricSettings(**values)


@pytest.fixture(autouse=True)
def fresh_openfabric_state():
    """Each test starts with no cached schemas and closed circuits (imported by the Openfabric test modules)."""
    from tools.openfabric.client import reset_state

    reset_state()
    yield
    reset_state()


def png_bytes(size: int = 8, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def glb_bytes() -> bytes:
    """A minimal valid GLB: one JSON chunk, no buffers."""
    doc = json.dumps({"asset": {"version": "2.0", "generator": "fake"}, "scenes": [{"nodes": []}], "scene": 0}).encode()
    doc += b" " * (-len(doc) % 4)
    chunk = struct.pack("<I4s", len(doc), b"JSON") + doc
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


def mp4_bytes() -> bytes:
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 32


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dead_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


TEXT_INPUT = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "description": "Text prompt"}},
    "required": ["prompt"],
    "additionalProperties": False,
}
IMAGE_OUTPUT = {
    "type": "object",
    "properties": {"result": {"type": "string", "format": "binary", "description": "Generated image (resource)"}},
}


MARSHMALLOW_TEXT_INPUT = marshmallow_document("InputClass", {
    "prompt": {"title": "prompt", "type": "string"},
    "attachments": {"title": "attachments", "type": "array", "items": {"title": "attachments", "type": "string"}},
})
MARSHMALLOW_IMAGE_OUTPUT = marshmallow_document("OutputClass", {"result": resource_field("result", "blob")})
MARSHMALLOW_3D_INPUT = marshmallow_document("InputClass", {"input_image": resource_field("input_image", "blob")})
MARSHMALLOW_3D_OUTPUT = marshmallow_document("OutputClass", {"generated_object": resource_field("generated_object", "WebGL"),
                                                             "video_object": resource_field("video_object", "blob")})


@dataclass
class Faults:
    execution_statuses: list[int] = field(default_factory=list)  # REST executions answer these statuses first, in order
    socket_drops: int = 0  # the first N socket executions drop the connection after `submitted`
    socket_failures: list[str] = field(default_factory=list)  # the first socket executions answer FAILED with these messages
    execution_delay: float = 0.0  # seconds before any execution answers
    manifest_body: bytes | None = None  # raw manifest (e.g. HTML)
    manifest_content_type: str = "application/json"
    input_schema_body: bytes | None = None  # raw input schema (malformed / huge)
    output_schema_body: bytes | None = None
    schema_statuses: list[int] = field(default_factory=list)  # input-schema GETs answer these statuses first
    resource_statuses: list[int] = field(default_factory=list)
    resource_trickle: float = 0.0  # seconds between single bytes of a resource (slow-loris)
    resource_content_type: str | None = None  # override the resource content type
    resource_chunked: bool = False  # send resources without Content-Length
    response_by_restore_only: bool = False  # socket.io: never emit `response`; answer it only to a `restore` ping
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (status, Location), before anything else
    error_body: bytes | None = None  # the body of every injected error answer (a hostile app's text)


class FakeApp:
    def __init__(self, *, input_schema: dict | None = None, output_schema: dict | None = None, manifest: dict | None = None,
                 respond: Callable[[FakeApp, Any], Any] | None = None, socket_io: bool = True, faults: Faults | None = None,
                 shape: str = "json", token: str | None = None, pulses: int = 0, host: str = "127.0.0.1"):
        self.input_schema = input_schema if input_schema is not None else TEXT_INPUT
        self.output_schema = output_schema if output_schema is not None else IMAGE_OUTPUT
        self.manifest = manifest if manifest is not None else {"name": "fake-app", "version": "9.9.9", "description": "a fake app", "junk": "x" * 5000}
        self.respond = respond or (lambda app, body: {"result": app.put(png_bytes())})
        self.socket_io = socket_io
        self.faults = faults or Faults()
        self.resources: dict[str, tuple[bytes, str]] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.executions: list[tuple[str, Any]] = []  # (transport, body)
        self.socket_headers: list[dict] = []
        self.counts: Counter = Counter()
        self.server: RunningServer | None = None
        self.on_input_schema: Callable[[FakeApp], None] | None = None
        self.shape = shape  # "json" | "marshmallow" (REST answers repr(output); socket answers carry output_ts)
        self.token = token  # locked app: this bearer token is required
        self.locked = {"http", "socket.io"}  # what the token locks (a test may lock only one)
        self.pulses = pulses  # `pulse` events sent before each socket.io response
        self.authorizations: list[tuple[str, str | None]] = []  # (what, the Authorization header or socket auth token seen)
        self.refused: Counter = Counter()  # what was refused for want of a token
        self.current: dict[str, Any] = {}  # transport and qid of the execution being answered (for resource ids)
        self.finished: dict[str, dict] = {}  # qid -> the response, for `restore`
        self.host = host

    # --------------------------------------------------------------- helpers for tests

    def put(self, data: bytes, mime: str = "application/octet-stream") -> str:
        ref = "data_blob_" + sha(data)
        self.resources[ref] = (data, mime)
        return ref

    def put_resource(self, data: bytes, encoding: str = "blob", mime: str = "application/octet-stream") -> str:
        """A resource id as the real apps write it: `data_<encoding>_<sha256>/resources` on REST,
        `.../executions/<qid>` over socket.io. Empty `data` gives the id of empty content (a failed generation)."""
        digest = sha(data)
        tail = f"/executions/{self.current['qid']}" if self.current.get("transport") == "socket" else "/resources"
        ref = f"data_{encoding}_{digest}{tail}"
        self.resources[ref] = (data, mime)
        return ref

    def file_url(self, name: str, data: bytes, mime: str) -> str:
        self.files[name] = (data, mime)
        return f"{self.url}/files/{name}"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def bodies(self) -> list[Any]:
        return [body for _, body in self.executions]

    def start(self) -> FakeApp:
        self.server = RunningServer(self.make_app(), host=self.host).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def __enter__(self) -> FakeApp:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --------------------------------------------------------------- the app

    def _allowed(self, what: str, offered: str | None) -> bool:
        self.authorizations.append((what, offered))
        if self.token is None or ("socket.io" if what == "socket.io" else "http") not in self.locked:
            return True
        if offered in (f"Bearer {self.token}", self.token):
            return True
        self.refused[what] += 1
        return False

    @web.middleware
    async def _lock(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path in self.faults.redirects:
            self.counts[f"redirect {request.path}"] += 1
            self.authorizations.append((request.path.strip("/"), request.headers.get("Authorization")))
            status, location = self.faults.redirects[request.path]
            return web.Response(status=status, headers={"Location": location})
        if request.path.startswith("/socket.io"):
            return await handler(request)
        if not self._allowed(request.path.strip("/"), request.headers.get("Authorization")):
            if request.path == "/execution":
                self.counts["execution"] += 1
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    def _error(self, status: int, default: dict) -> web.Response:
        if self.faults.error_body is not None:
            return web.Response(status=status, body=self.faults.error_body, content_type="text/html")
        return web.json_response(default, status=status)

    def make_app(self) -> web.Application:
        """The real node's app factory (agent/openfabric_node.py) with this fake's fault-injecting handlers."""
        sio = None
        if self.socket_io:
            sio = self.sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=64 * 1024 * 1024)
            self.sio.on("execute", self.socket_execute, namespace="/app")
            self.sio.on("connect", self.socket_connect, namespace="/app")
            self.sio.on("restore", self.socket_restore, namespace="/app")
        return openfabric_app(manifest=self.manifest_handler, schema=self.schema_handler, execution=self.execution_handler,
                              resource=self.resource_handler, sio=sio, middlewares=[self._lock], client_max_size=64 * 1024 * 1024,
                              extra_routes=[("GET", "/files/{name}", self.file_handler)])

    async def manifest_handler(self, request: web.Request) -> web.StreamResponse:
        self.counts["manifest"] += 1
        if self.faults.manifest_body is not None:
            return web.Response(body=self.faults.manifest_body, content_type=self.faults.manifest_content_type)
        return web.json_response(self.manifest)

    async def schema_handler(self, request: web.Request) -> web.StreamResponse:
        which = request.query.get("type")
        self.counts[f"schema-{which}"] += 1
        if which == "input":
            if self.on_input_schema:
                self.on_input_schema(self)
            if self.faults.schema_statuses:
                return self._error(self.faults.schema_statuses.pop(0), {"error": "injected"})
            if self.faults.input_schema_body is not None:
                return web.Response(body=self.faults.input_schema_body, content_type="application/json")
            return web.json_response(self.input_schema)
        if which == "output":
            if self.faults.output_schema_body is not None:
                return web.Response(body=self.faults.output_schema_body, content_type="application/json")
            return web.json_response(self.output_schema)
        return web.json_response({"error": "bad type"}, status=400)

    async def execution_handler(self, request: web.Request) -> web.StreamResponse:
        self.counts["execution"] += 1
        body = await request.json()
        self.executions.append(("rest", body))
        if self.faults.execution_delay:
            await asyncio.sleep(self.faults.execution_delay)
        if self.faults.execution_statuses:
            status = self.faults.execution_statuses.pop(0)
            return self._error(status, {"error": f"injected {status}"})
        self.current = {"transport": "rest", "qid": None}
        try:
            output = self.respond(self, body)
        except ValueError as exc:  # the app cannot use the input (e.g. a resource id as input_image)
            return web.json_response({"error": str(exc)}, status=400)
        if isinstance(output, (bytes, str)):  # raw (malformed) answer
            return web.Response(body=output if isinstance(output, bytes) else output.encode(), content_type="application/json")
        if self.shape == "marshmallow":  # the SDK's Flask view answers str(output)
            return web.Response(text=repr(output), content_type="text/html")
        return web.json_response(output)

    async def resource_handler(self, request: web.Request) -> web.StreamResponse:
        self.counts["resource"] += 1
        ref = request.query.get("reid", "")
        if self.faults.resource_statuses:
            return self._error(self.faults.resource_statuses.pop(0), {"error": "injected"})
        if ref not in self.resources:
            return web.json_response({"error": f"Resource not found: {ref}"}, status=404)
        data, mime = self.resources[ref]
        return await self._send(request, data, self.faults.resource_content_type or mime)

    async def file_handler(self, request: web.Request) -> web.StreamResponse:
        self.counts["file"] += 1
        name = request.match_info["name"]
        if name not in self.files:
            return web.json_response({"error": "no such file"}, status=404)
        data, mime = self.files[name]
        return await self._send(request, data, mime)

    async def _send(self, request: web.Request, data: bytes, mime: str) -> web.StreamResponse:
        if not (self.faults.resource_trickle or self.faults.resource_chunked):
            return web.Response(body=data, content_type=mime)
        resp = web.StreamResponse(headers={"Content-Type": mime})
        if not self.faults.resource_chunked:
            resp.content_length = len(data)
        await resp.prepare(request)
        try:
            if self.faults.resource_trickle:
                for i in range(len(data)):
                    await resp.write(data[i:i + 1])
                    await asyncio.sleep(self.faults.resource_trickle)
            else:
                for i in range(0, len(data), 65536):
                    await resp.write(data[i:i + 65536])
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client gave up (that is what the slow-loris and size-cap tests expect)
        return resp

    async def socket_restore(self, sid: str, qid: Any = None) -> None:
        self.counts["restore"] += 1
        found = self.finished.get(str(qid))
        if found is not None:
            await self.sio.emit("restore", found, to=sid, namespace="/app")

    async def socket_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        offered = environ.get("HTTP_AUTHORIZATION") or (auth.get("token") if isinstance(auth, dict) else None)
        if not self._allowed("socket.io", offered):
            raise socketio.exceptions.ConnectionRefusedError("UNAUTHORIZED")

    async def socket_execute(self, sid: str, data: Any = None, background: Any = True) -> None:
        self.counts["socket-execute"] += 1
        payload = json.loads(zlib.decompress(data).decode("utf-8"))
        header = payload.get("header", {})
        body = payload.get("body")
        self.socket_headers.append(header)
        self.executions.append(("socket", body))
        rid = header.get("rid")
        qid = hashlib.md5(f"{rid}-{self.counts['socket-execute']}".encode()).hexdigest()  # 32 hex, as the real queue ids
        ray = {"sid": sid, "uid": header.get("uid"), "rid": rid, "qid": qid,
               "bars": {"default": {"percent": 0, "remaining": "NaN"}}, "messages": [], "status": "QUEUED", "finished": False}
        await self.sio.emit("submitted", dict(ray), to=sid, namespace="/app")
        # an event for somebody else's request must be ignored by the client
        await self.sio.emit("progress", {**ray, "rid": "someone-else", "bars": {"default": {"percent": 99}}}, to=sid, namespace="/app")
        if self.faults.socket_drops > 0:
            self.faults.socket_drops -= 1
            await self.sio.emit("progress", {**ray, "status": "RUNNING", "bars": {"default": {"percent": 10}}}, to=sid, namespace="/app")
            await asyncio.sleep(0.05)
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/app")
            await self.sio.eio.disconnect(eio_sid)
            return
        if self.faults.execution_delay:
            await asyncio.sleep(self.faults.execution_delay)
        if self.faults.socket_failures:
            message = self.faults.socket_failures.pop(0)
            failed = {**ray, "status": "FAILED", "finished": True, "messages": [{"type": "ERROR", "content": message}]}
            await self.sio.emit("response", {"ray": failed, "output": None}, to=sid, namespace="/app")
            return
        for _ in range(self.pulses):  # keep-alives while the app works: no ray, just the ids and a time
            await self.sio.emit("pulse", {"rid": rid, "qid": qid, "ts": "2026-01-01T00:00:00Z"}, to=sid, namespace="/app")
        for percent in (25, 50, 75):
            await self.sio.emit("progress", {**ray, "status": "RUNNING", "bars": {"default": {"percent": percent}},
                                             "messages": [{"type": "INFO", "content": f"step {percent}"}]}, to=sid, namespace="/app")
        self.current = {"transport": "socket", "qid": qid}
        try:
            output = self.respond(self, body)
        except ValueError as exc:
            failed = {**ray, "status": "FAILED", "finished": True, "messages": [{"type": "ERROR", "content": str(exc)}]}
            await self.sio.emit("response", {"ray": failed, "output": None}, to=sid, namespace="/app")
            return
        done = {**ray, "status": "COMPLETED", "finished": True, "bars": {"default": {"percent": 100}}}
        answer = {"ray": done, "output": output}
        if self.shape == "marshmallow":
            answer["output_ts"] = "2026-01-01T00:00:01Z"
        self.finished[qid] = answer
        if self.faults.response_by_restore_only:
            return
        await self.sio.emit("response", answer, to=sid, namespace="/app")


# ------------------------------------------------------------------------------------- the real apps' contract


def decode_input_image(value: Any) -> bytes:
    """What a real image-to-3D app does with input_image: base64 or a data URL -> bytes. A resource id (or anything
    else) is not an image: the app fails, so the fake raises and the test sees it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"input_image is {type(value).__name__}, not base64 text")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"input_image is not base64 (starts {value[:40]!r}); a resource id is not an image") from None
    if not data.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        raise ValueError(f"input_image decodes to {data[:8]!r}, not an image")
    return data


def marshmallow_text_to_image(image: bytes | None = None, *, fail: bool = False, **kwargs: Any) -> FakeApp:
    """A text-to-image app as the real one answers; `image` is what it makes (fresh PNG bytes per prompt by default),
    `fail` makes it answer the empty resource. `app.made` lists the bytes it returned, in order."""

    def respond(app: FakeApp, body: Any) -> dict:
        if fail:
            return {"result": app.put_resource(b"", "blob")}
        data = image if image is not None else png_bytes(16, (len(body.get("prompt", "")) % 256, 90, 160))
        app.made.append(data)
        return {"result": app.put_resource(data, "blob", "image/png")}

    app = FakeApp(input_schema=MARSHMALLOW_TEXT_INPUT, output_schema=MARSHMALLOW_IMAGE_OUTPUT, respond=respond, shape="marshmallow",
                  manifest={"name": "text-to-image", "version": "0.1.0", "sdk": "openfabric-pysdk"}, pulses=2, **kwargs)
    app.made = []
    return app


def marshmallow_image_to_3d(model: bytes | None = None, *, fail: bool = False, **kwargs: Any) -> FakeApp:
    """An image-to-3D app as the real one answers: input_image must be image bytes (base64 / data URL);
    `app.received` lists the image bytes it was sent, `app.made` the models it returned."""

    def respond(app: FakeApp, body: Any) -> dict:
        app.received.append(decode_input_image(body.get("input_image")))
        if fail:
            return {"generated_object": app.put_resource(b"", "WebGL"), "video_object": None}
        data = model if model is not None else glb_bytes()
        app.made.append(data)
        return {"generated_object": app.put_resource(data, "WebGL", "model/gltf-binary"), "video_object": None}

    app = FakeApp(input_schema=MARSHMALLOW_3D_INPUT, output_schema=MARSHMALLOW_3D_OUTPUT, respond=respond, shape="marshmallow",
                  manifest={"name": "image-to-3d", "version": "0.1.0", "sdk": "openfabric-pysdk"}, pulses=2, **kwargs)
    app.received = []
    app.made = []
    return app
