"""`atelier node`: a local Openfabric node, serving a local backend over the Openfabric app protocol
(tools/openfabric/protocol.py). An entry point beside the CLI: nothing in the library layers imports it.

    atelier node text-to-image --port 8765 [--host 127.0.0.1] [--backend sketch] [--shape marshmallow|simple] [--token T]
    atelier node image-to-3d  --port 8766 [--host 127.0.0.1] [--backend relief] [--shape marshmallow|simple] [--token T]

then point Atelier (or any Openfabric client) at it:
    ATELIER_TEXT_TO_IMAGE_APP=http://127.0.0.1:8765  ATELIER_IMAGE_TO_3D_APP=http://127.0.0.1:8766

Endpoints, as on an Openfabric node:
    GET  /manifest                 name, version, description, ...
    GET  /schema?type=input|output JSON Schema of the input / output object
    POST /execution                input JSON -> output (resources as ids)
    GET  /resource?reid=<id>       the bytes behind a resource id
    socket.io namespace /app       `execute` (zlib JSON {"body", "header": {"uid", "rid"}}, background)
                                   -> `submitted` (ray), `pulse` / `progress` (ray: bars, messages, status), `response`
                                   ({"ray": ..., "output": ..., "output_ts": ...}); `restore` (qid) -> the ray again

Two answer shapes:
    marshmallow (default) - as the real apps answer (openfabric-pysdk with marshmallow-jsonschema): schemas are
        {"$schema", "definitions": {"InputClass": ...}, "$ref": "#/definitions/InputClass"} with resource fields
        (`is_resource`, `resource_type`, `resource_encoding`); text-to-image takes {prompt, attachments}; REST
        answers the Python repr of the output; resource ids are `data_blob_<sha256>/resources` (REST) or
        `.../executions/<qid>` (socket.io), models `data_WebGL_<sha256>/...`; `video_object` is None when there is
        no video; a failed generation answers the id of empty content (sha256 e3b0c442...). (Both shapes pulse.)
    simple - a friendlier JSON shape: plain JSON Schema with prompt/negative_prompt/seed/width/height/steps,
        JSON answers, `data_blob_<sha256>` ids.
With a token (--token or ATELIER_OPENFABRIC_NODE_TOKEN) the node is locked: HTTP answers 401 and socket.io
refuses the connection with UNAUTHORIZED unless `Authorization: Bearer <token>` (or auth {"token"}) is sent.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jsonschema
import socketio
from aiohttp import web

from tools.backends.base import BackendError, GeneratedAsset, ImageRequest, MeshRequest
from tools.openfabric.config import get_openfabric_settings
from tools.openfabric.protocol import (
    APP_KINDS,
    DEFAULT_SHAPE,
    EMPTY_SHA256,
    IMAGE_TO_3D,
    MARSHMALLOW,
    SHAPES,
    TEXT_TO_IMAGE,
    InputRejected,
    Ray,
    ResourceStore,
    decode_execute_payload,
    decode_image_field,
    default_manifest,
    default_schemas,
    marshmallow_schemas,
    now_iso,
    sha_in,
)

log = logging.getLogger("atelier.openfabric")

DEFAULT_BACKENDS = {TEXT_TO_IMAGE: "sketch", IMAGE_TO_3D: "relief"}
PULSE_SECONDS = 2.0  # the SDK's Proxy gives up after 15 s without an update


Handler = Callable[[web.Request], Any]


def openfabric_app(*, manifest: Handler, schema: Handler, execution: Handler, resource: Handler, client_max_size: int,
                   sio: socketio.AsyncServer | None = None, middlewares: list | tuple = (),
                   extra_routes: list[tuple[str, str, Handler]] | tuple = ()) -> web.Application:
    """An aiohttp application with an Openfabric app's endpoints (GET /manifest, GET /schema?type=, POST /execution,
    GET /resource?reid=, socket.io /app when `sio` is given, its handlers registered by the caller). The node
    passes its own handlers; the test fakes (tests/support/openfabric_fakes.py) pass fault-injecting ones."""
    app = web.Application(client_max_size=client_max_size, middlewares=list(middlewares))
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    app.router.add_get("/manifest", manifest)
    app.router.add_get("/schema", schema)
    app.router.add_post("/execution", execution)
    app.router.add_get("/resource", resource)
    if sio is not None:
        sio.attach(app)
    return app


class LocalNode:
    """Serves one local backend as an Openfabric app (see module docstring)."""

    def __init__(self, app_kind: str, backend: Any, *, backend_name: str | None = None, manifest: dict | None = None,
                 input_schema: dict | None = None, output_schema: dict | None = None, max_message_bytes: int = 64 * 1024 * 1024,
                 shape: str = DEFAULT_SHAPE, token: str | None = None, pulse_seconds: float = PULSE_SECONDS):
        if app_kind not in APP_KINDS:
            raise ValueError(f"unknown app kind {app_kind!r} (use {TEXT_TO_IMAGE} or {IMAGE_TO_3D})")
        if shape not in SHAPES:
            raise ValueError(f"unknown node shape {shape!r} (use {' or '.join(SHAPES)})")
        self.app_kind = app_kind
        self.kind = APP_KINDS[app_kind]
        self.backend = backend
        self.backend_name = backend_name or getattr(backend, "name", type(backend).__name__)
        self.shape = shape
        self.token = (token or "").strip() or None
        self.pulse_seconds = pulse_seconds
        self._rays: dict[str, tuple[Ray, dict | None]] = {}  # qid -> (ray, output) for `restore`
        default_in, default_out = marshmallow_schemas(app_kind) if shape == MARSHMALLOW else default_schemas(app_kind)
        self.manifest = manifest or default_manifest(app_kind, self.backend_name)
        self.input_schema = input_schema or default_in
        self.output_schema = output_schema or default_out
        self.validator = jsonschema.validators.validator_for(self.input_schema)(self.input_schema)
        self.store = ResourceStore()
        self.max_message_bytes = max_message_bytes
        self._busy = asyncio.Semaphore(1)  # local backends use the CPU; one generation at a time
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", max_http_buffer_size=max_message_bytes,
                                        logger=False, engineio_logger=False)
        self._register_socket_handlers()

    # ------------------------------------------------------------------ the app

    def _authorized(self, headers: Any, auth: Any = None) -> bool:
        if not self.token:
            return True
        bearer = str(headers.get("Authorization") or headers.get("HTTP_AUTHORIZATION") or "")
        offered = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        if not offered and isinstance(auth, dict):
            offered = str(auth.get("token") or "")
        return offered == self.token

    @web.middleware
    async def _lock(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith("/socket.io") or self._authorized(request.headers):
            return await handler(request)  # socket.io checks the token itself, in `connect`
        return web.json_response({"error": "UNAUTHORIZED"}, status=401)

    def make_app(self) -> web.Application:
        return openfabric_app(manifest=self.handle_manifest, schema=self.handle_schema, execution=self.handle_execution,
                              resource=self.handle_resource, sio=self.sio, middlewares=[self._lock] if self.token else [],
                              client_max_size=self.max_message_bytes, extra_routes=[("GET", "/", self.handle_index)])

    async def handle_index(self, request: web.Request) -> web.Response:
        return web.json_response({"app": self.manifest.get("name"), "endpoints": ["/manifest", "/schema?type=input", "/schema?type=output",
                                                                                 "/execution", "/resource?reid=", "socket.io /app"]})

    async def handle_manifest(self, request: web.Request) -> web.Response:
        return web.json_response(self.manifest)

    async def handle_schema(self, request: web.Request) -> web.Response:
        which = request.query.get("type", "")
        if which == "input":
            return web.json_response(self.input_schema)
        if which == "output":
            return web.json_response(self.output_schema)
        return web.json_response({"error": "type must be input or output"}, status=400)

    async def handle_resource(self, request: web.Request) -> web.Response:
        ref = request.query.get("reid", "")
        found = self.store.get(ref)
        if found is None:
            return web.json_response({"error": f"Resource not found: {ref}"}, status=404)
        data, mime = found
        return web.Response(body=data, content_type=mime)

    async def handle_execution(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "body is not JSON"}, status=400)
        try:
            output = await self.run(body, lambda _f, _m: None, tail="/resources")
        except InputRejected as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except BackendError as exc:
            return web.json_response({"error": str(exc)}, status=503 if exc.transient else 500)
        log.info("openfabric node step=execute app=%s transport=rest seconds=%.2f", self.app_kind, time.monotonic() - started)
        if self.shape == MARSHMALLOW:  # the SDK's Flask view returns str(output): a Python repr, not JSON
            return web.Response(text=repr(output), content_type="text/html")
        return web.json_response(output)

    # ------------------------------------------------------------------ execution

    def _validate(self, body: Any) -> None:
        errors = sorted(self.validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            text = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in errors[:5])
            raise InputRejected(f"input does not match the schema: {text}")

    def _request(self, body: dict) -> ImageRequest | MeshRequest:
        if self.kind == "image":
            if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
                raise InputRejected("prompt: a non-empty text is required")
            return ImageRequest(prompt=body["prompt"], negative_prompt=body.get("negative_prompt"), width=int(body.get("width", 512)),
                                height=int(body.get("height", 512)), seed=body.get("seed"), steps=body.get("steps"))
        if not body.get("input_image"):
            raise InputRejected("input_image: the image (base64 or a data: URL) is required")
        if sha_in(str(body["input_image"])):
            raise InputRejected("input_image holds a resource id; send the image bytes (base64 or a data: URL)")
        image, mime = decode_image_field(body["input_image"])
        return MeshRequest(image=image, image_mime=mime, prompt=body.get("prompt"), seed=body.get("seed"))

    def _resource_id(self, data: bytes, mime: str, kind: str, tail: str) -> str:
        ref = self.store.put(data, mime) if data else f"data_blob_{EMPTY_SHA256}"
        if self.shape != MARSHMALLOW:
            return ref
        encoding = "WebGL" if kind == "model" else "blob"
        return f"data_{encoding}_{ref.rsplit('_', 1)[1]}{tail}"

    def _output(self, assets: list[GeneratedAsset], tail: str = "/resources") -> dict:
        output: dict[str, Any] = {"video_object": None} if self.kind == "model" and self.shape == MARSHMALLOW else {}
        for asset in assets:
            ref = self._resource_id(asset.data, asset.mime, asset.kind, tail)
            if self.kind == "image" and asset.kind == "image" and "result" not in output:
                output["result"] = ref
            elif self.kind == "model" and asset.kind == "model" and "generated_object" not in output:
                output["generated_object"] = ref
            elif self.kind == "model" and asset.kind == "video" and not output.get("video_object"):
                output["video_object"] = ref
        if not any(output.values()):
            raise BackendError(f"backend '{self.backend_name}' returned no {self.kind}", transient=True)
        return output

    def _failed_output(self, tail: str) -> dict:
        """What the real apps answer when their generation fails: the id of empty content, not an error."""
        empty = self._resource_id(b"", "application/octet-stream", self.kind, tail)
        return {"result": empty} if self.kind == "image" else {"generated_object": empty, "video_object": None}

    async def run(self, body: Any, progress: Callable[[float | None, str], None], tail: str = "/resources") -> dict:
        self._validate(body)
        request = self._request(body)
        try:
            async with self._busy:
                assets = await asyncio.to_thread(self.backend.generate, request, progress)
            return self._output(assets, tail)
        except BackendError as exc:
            if self.shape != MARSHMALLOW:
                raise
            log.warning("openfabric node step=execute app=%s status=failed reason=%s (answering the empty resource, as the apps do)",
                        self.app_kind, exc)
            return self._failed_output(tail)

    # ------------------------------------------------------------------ socket.io

    def _register_socket_handlers(self) -> None:
        sio = self.sio

        @sio.on("connect", namespace="/app")
        async def connect(sid, environ, auth=None):
            if not self._authorized(environ, auth):
                log.info("openfabric node socket connect refused sid=%s (no valid token)", sid)
                raise socketio.exceptions.ConnectionRefusedError("UNAUTHORIZED")
            log.debug("openfabric node socket connect sid=%s", sid)

        @sio.on("execute", namespace="/app")
        async def execute(sid, data=None, background=True):
            try:
                payload = decode_execute_payload(data)
            except (InputRejected, ValueError, UnicodeDecodeError) as exc:
                ray = Ray(sid, None, None, uuid.uuid4().hex)
                ray.update(status="FAILED", message=f"bad execute payload: {exc}", kind="ERROR")
                ray.finished = True
                await sio.emit("response", {"ray": ray.dump(), "output": None}, to=sid, namespace="/app")
                return
            header = payload.get("header") if isinstance(payload.get("header"), dict) else {}
            ray = Ray(sid, header.get("uid"), header.get("rid") or uuid.uuid4().hex, uuid.uuid4().hex if background else sid)
            self._rays[ray.qid] = (ray, None)
            while len(self._rays) > 256:  # bounded: old rays are forgotten
                self._rays.pop(next(iter(self._rays)))
            if background:
                await sio.emit("submitted", ray.dump(), to=sid, namespace="/app")
            sio.start_background_task(self._socket_execution, sid, ray, payload.get("body"))

        @sio.on("restore", namespace="/app")
        async def restore(sid, qid=None):
            # the SDK's Proxy asks for the state after 5 s without an update; "output" only once there is one
            found = self._rays.get(str(qid))
            if found is None:
                return
            ray, output = found
            answer: dict[str, Any] = {"ray": ray.dump()}
            if ray.finished:
                answer["output"] = output
            await sio.emit("restore", answer, to=sid, namespace="/app")

        @sio.on("delete", namespace="/app")
        async def delete(sid, qid=None):
            self._rays.pop(str(qid), None)
            return None

    async def _socket_execution(self, sid: str, ray: Ray, body: Any) -> None:
        started = time.monotonic()
        loop = asyncio.get_running_loop()

        def emit_progress() -> None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.sio.emit("progress", copy.deepcopy(ray.dump()), to=sid, namespace="/app"), loop)

        def progress(fraction: float | None, message: str) -> None:
            ray.update(status="RUNNING", percent=None if fraction is None else fraction * 100.0, message=message)
            emit_progress()

        async def pulse() -> None:
            while True:
                await asyncio.sleep(self.pulse_seconds)
                await self.sio.emit("pulse", {"rid": ray.rid, "qid": ray.qid, "status": ray.status, "ts": now_iso()}, to=sid, namespace="/app")

        output = None
        pulses = asyncio.ensure_future(pulse())  # both shapes: a keep-alive costs nothing and saves long runs from stall watchdogs
        try:
            ray.update(status="RUNNING", message=f"{self.backend_name}: started")
            await self.sio.emit("progress", ray.dump(), to=sid, namespace="/app")
            output = await self.run(body, progress, tail=f"/executions/{ray.qid}")
            ray.update(status="COMPLETED", percent=100.0, message="done")
        except InputRejected as exc:
            ray.update(status="FAILED", message=str(exc), kind="ERROR")
        except BackendError as exc:
            ray.update(status="FAILED", message=f"{self.backend_name} failed: {exc}", kind="ERROR")
        except Exception as exc:  # report, never leave the client waiting
            log.exception("openfabric node execution failed")
            ray.update(status="FAILED", message=f"{type(exc).__name__}: {exc}", kind="ERROR")
        finally:
            if pulses is not None:
                pulses.cancel()
        ray.finished = True
        self._rays[ray.qid] = (ray, output)
        answer = {"ray": ray.dump(), "output": output}
        if self.shape == MARSHMALLOW:
            answer["output_ts"] = now_iso()
        await self.sio.emit("response", answer, to=sid, namespace="/app")
        log.info("openfabric node step=execute app=%s transport=socket.io seconds=%.2f status=%s", self.app_kind, time.monotonic() - started, ray.status)


# ---------------------------------------------------------------------- running


class RunningServer:
    """An aiohttp application served from a background thread (tests, embedding)."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"openfabric-node-{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("local node did not start in time")
        if self._error:
            raise RuntimeError(f"local node failed to start: {self._error}") from self._error
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=1.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.cleanup(), 5)
            # socket.io keeps service / ping tasks: end them so the loop closes cleanly
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 5)

    def call(self, coro_factory: Callable[[], Any], timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro_factory(), self.loop).result(timeout)

    def stop(self) -> None:
        if self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_in_thread(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    return RunningServer(app, host, port).start()


def build_node(app_kind: str, backend_name: str | None = None, *, shape: str = DEFAULT_SHAPE, token: str | None = None) -> LocalNode:
    from tools.backends import load_backend

    name = backend_name or DEFAULT_BACKENDS[app_kind]
    if name == "openfabric":
        raise ValueError("the local node cannot serve the openfabric backend itself (it would call itself)")
    backend = load_backend(name, APP_KINDS[app_kind])
    return LocalNode(app_kind, backend, backend_name=name, shape=shape, token=token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atelier node", description="Serve a local backend as an Openfabric app (manifest, schema, REST /execution, socket.io /app, /resource).")
    parser.add_argument("app", choices=sorted(APP_KINDS), help="which Openfabric app to stand in for")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--backend", default=None, help="local backend to serve (default: sketch for text-to-image, relief for image-to-3d)")
    parser.add_argument("--shape", choices=SHAPES, default=DEFAULT_SHAPE,
                        help="answer shape: marshmallow (as the real apps: $ref schemas, resource ids, repr on REST; default) or simple (plain JSON)")
    parser.add_argument("--token", default=get_openfabric_settings().node_token,
                        help="lock the node: require this bearer token (default: ATELIER_OPENFABRIC_NODE_TOKEN; empty = open)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        node = build_node(args.app, args.backend, shape=args.shape, token=args.token or None)
    except (BackendError, ValueError) as exc:
        print(f"atelier node: {exc}")
        return 2
    env = "ATELIER_TEXT_TO_IMAGE_APP" if args.app == TEXT_TO_IMAGE else "ATELIER_IMAGE_TO_3D_APP"
    print(f"Openfabric node '{args.app}' ({node.shape} shape{', locked' if node.token else ''}) with backend '{node.backend_name}' "
          f"on http://{args.host}:{args.port}\n"
          f"use it with: {env}=http://{args.host}:{args.port}", flush=True)
    try:
        web.run_app(node.make_app(), host=args.host, port=args.port, print=None, shutdown_timeout=2.0)
    except OSError as exc:
        print(f"atelier node: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    return 0


if __name__ == "__main__":  # python -m agent.openfabric_node ...
    raise SystemExit(main())
