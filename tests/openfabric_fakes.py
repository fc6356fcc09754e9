"""Configurable fake Openfabric apps for the client tests (loopback only, started in a background thread).

A FakeApp serves the Openfabric protocol (manifest, schema, REST /execution, /resource, socket.io /app)
with whatever schemas and outputs a test gives it, records what it was sent, and injects faults:
HTTP error statuses, slow answers, dropped sockets, malformed or huge documents, slow-loris bodies,
wrong bytes and content types.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import socketio
from aiohttp import web

from tools.openfabric.node import RunningServer


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


class FakeApp:
    def __init__(self, *, input_schema: dict | None = None, output_schema: dict | None = None, manifest: dict | None = None,
                 respond: Callable[["FakeApp", Any], Any] | None = None, socket_io: bool = True, faults: Faults | None = None):
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
        self.on_input_schema: Callable[["FakeApp"], None] | None = None

    # --------------------------------------------------------------- helpers for tests

    def put(self, data: bytes, mime: str = "application/octet-stream") -> str:
        ref = "data_blob_" + sha(data)
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

    def start(self) -> "FakeApp":
        self.server = RunningServer(self.make_app()).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def __enter__(self) -> "FakeApp":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --------------------------------------------------------------- the app

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/manifest", self.manifest_handler)
        app.router.add_get("/schema", self.schema_handler)
        app.router.add_post("/execution", self.execution_handler)
        app.router.add_get("/resource", self.resource_handler)
        app.router.add_get("/files/{name}", self.file_handler)
        if self.socket_io:
            self.sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=64 * 1024 * 1024)
            self.sio.on("execute", self.socket_execute, namespace="/app")
            self.sio.attach(app)
        return app

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
                return web.json_response({"error": "injected"}, status=self.faults.schema_statuses.pop(0))
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
            return web.json_response({"error": f"injected {status}"}, status=status)
        output = self.respond(self, body)
        if isinstance(output, (bytes, str)):  # raw (malformed) answer
            return web.Response(body=output if isinstance(output, bytes) else output.encode(), content_type="application/json")
        return web.json_response(output)

    async def resource_handler(self, request: web.Request) -> web.StreamResponse:
        self.counts["resource"] += 1
        ref = request.query.get("reid", "")
        if self.faults.resource_statuses:
            return web.json_response({"error": "injected"}, status=self.faults.resource_statuses.pop(0))
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

    async def socket_execute(self, sid: str, data: Any = None, background: Any = True) -> None:
        self.counts["socket-execute"] += 1
        payload = json.loads(zlib.decompress(data).decode("utf-8"))
        header = payload.get("header", {})
        body = payload.get("body")
        self.socket_headers.append(header)
        self.executions.append(("socket", body))
        rid = header.get("rid")
        ray = {"sid": sid, "uid": header.get("uid"), "rid": rid, "qid": "q-" + str(self.counts["socket-execute"]),
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
        for percent in (25, 50, 75):
            await self.sio.emit("progress", {**ray, "status": "RUNNING", "bars": {"default": {"percent": percent}},
                                             "messages": [{"type": "INFO", "content": f"step {percent}"}]}, to=sid, namespace="/app")
        output = self.respond(self, body)
        done = {**ray, "status": "COMPLETED", "finished": True, "bars": {"default": {"percent": 100}}}
        await self.sio.emit("response", {"ray": done, "output": output}, to=sid, namespace="/app")
