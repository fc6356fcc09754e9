"""Openfabric app client: manifest + schemas (cached), socket.io or REST execution, resources, faults.

One `generate` call runs under a single total deadline (`execution_timeout`), so a slow or trickling app
cannot hold it longer than that whatever its per-read behaviour. Inside the deadline each call is retried
with exponential backoff and jitter when the failure is transient (connection error, 5xx, dropped socket);
4xx and schema errors are not retried. A circuit breaker per app refuses requests at once after the app
proved dead. The protocol is that of openfabric_pysdk.helper.proxy.Proxy (0.2.9): socket.io namespace
/app, `execute` with (zlib(JSON {"body", "header": {"uid", "rid"}}), background flag), answers
`submitted` / `pulse` / `progress` / `response` ({output, ray, output_ts}); REST POST /execution (answered
with the Python repr of the output, read with ast.literal_eval); GET /manifest, /schema?type=...,
/resource?reid=<resource id>. Three execution transports: our own socket.io client (`socket`), the SDK's
Proxy (`sdk`), and REST (`rest`); `auto` is our socket.io client with REST as the fallback.
"""
from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import copy
import hashlib
import json
import logging
import socket
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import httpx
import socketio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from tools.backends.base import BackendError, GeneratedAsset, ProgressFn, no_progress

from .breaker import CircuitOpen, breaker_for, reset_breakers
from .config import AppAddress, OpenfabricSettings, get_openfabric_settings, resolve_app
from .errors import (
    BadResponse,
    BadSchema,
    CallTimeout,
    ClientError,
    HostNotFound,
    OpenfabricError,
    OutboundRefused,
    SchemaMismatch,
    ServerError,
    SocketDropped,
    SocketUnavailable,
    GenerationFailed,
    TooLarge,
    Unauthorized,
    Unreachable,
)
from .outbound import MAX_REDIRECTS, OutboundPolicy, parse_allowed_hosts
from .output import AssetLimits, Extraction, FoundAsset, describe_content, extract, sniff
from .schema_mapping import MappedInput, ToolValues, build_input, field_names, validator_for

log = logging.getLogger("atelier.openfabric")
T = TypeVar("T")

MANIFEST_KEYS = ("name", "version", "description", "organization", "sdk", "overview")
FAILED_STATUSES = {"FAILED", "CANCELED", "CANCELLED", "REMOVED", "ERROR"}
# statuses shown to the user as they are; any other word from the app is not repeated
KNOWN_STATUSES = {"QUEUED", "PENDING", "SUBMITTED", "RUNNING", "STARTED", "PROCESSING", "COMPLETED", "FINISHED", "UNKNOWN", *FAILED_STATUSES}
SCHEMA_WORDS = ("schema", "validation", "valid", "required", "missing", "unknown field", "unexpected")
UNAUTHORIZED_WORDS = ("unauthorized", "unauthorised", "401")
RESTORE_AFTER = 5.0  # seconds without an update before asking for the state, as the SDK's Proxy does
MAX_LITERAL_DEPTH = 64  # nesting accepted in a repr answer (a real output is 1-2 levels deep)


@dataclass
class AppMetadata:
    manifest: dict
    input_schema: dict
    output_schema: dict
    fetched_at: float
    warnings: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version") or "")

    def trimmed_manifest(self) -> dict:
        out = {}
        for key in MANIFEST_KEYS:
            value = self.manifest.get(key)
            if value is None:
                continue
            out[key] = value[:300] if isinstance(value, str) else value if isinstance(value, (int, float, bool)) else str(value)[:300]
        return out


# Process-wide caches, keyed by base URL (backend instances and event loops come and go).
_meta_cache: dict[str, AppMetadata] = {}
_socket_unavailable_until: dict[str, float] = {}


def reset_state() -> None:
    """Forget cached schemas, transport choices and circuit breakers (tests, operators)."""
    _meta_cache.clear()
    _socket_unavailable_until.clear()
    reset_breakers()


def _is_loopback(host: str | None) -> bool:
    return (host or "") in ("127.0.0.1", "localhost", "::1", "[::1]")


class OpenfabricClient:
    def __init__(self, app: str, settings: OpenfabricSettings | None = None, *, label: str = ""):
        self.settings = settings or get_openfabric_settings()
        self.address: AppAddress = resolve_app(app, self.settings.node_domain)
        self.label = label or self.address.app_id
        self.outbound = OutboundPolicy(self.address.base_url, parse_allowed_hosts(self.settings.allowed_hosts))
        self.breaker = breaker_for(self.address.base_url, self.settings.breaker_failures, self.settings.breaker_reset_seconds)
        self.attempts: dict[str, int] = {}
        self.step = "start"
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ plumbing

    def auth_headers(self) -> dict[str, str]:
        """The token as a bearer header, on REST calls to the app's own origin and on the socket.io handshake (empty:
        nothing sent); never to another host an answer names (tools/openfabric/outbound.py).
        openfabric-pysdk 0.2.9 has no token support of its own (its Proxy and RemoteService send no credentials),
        so the standard HTTP form is used; see docs/openfabric.md."""
        token = self.settings.token.strip()
        return {"authorization": f"Bearer {token}"} if token else {}

    def _unauthorized(self, what: str, detail: str) -> Unauthorized:  # detail: our words, never the app's
        hint = ("the token in ATELIER_OPENFABRIC_TOKEN was refused" if self.settings.token.strip()
                else "the app is locked and no token is set (ATELIER_OPENFABRIC_TOKEN)")
        return Unauthorized(f"{what}: unauthorized ({detail}); {hint}")

    def _log(self, step: str, transport: str, started: float, extra: str = "") -> None:
        log.info("openfabric step=%s app=%s transport=%s seconds=%.2f%s", step, self.address.app_id, transport, time.monotonic() - started, f" {extra}" if extra else "")

    @contextlib.asynccontextmanager
    async def session(self):
        s = self.settings
        timeout = httpx.Timeout(connect=s.connect_timeout, read=s.request_timeout, write=s.request_timeout, pool=s.connect_timeout)
        host = urlsplit(self.address.base_url).hostname
        # redirects are followed by _request, hop by hop through the outbound rules; the token is added per request
        async with httpx.AsyncClient(timeout=timeout, verify=s.verify_tls, follow_redirects=False, trust_env=not _is_loopback(host),
                                     headers={"accept": "application/json, */*"}) as http:
            self._http = http
            try:
                yield self
            finally:
                self._http = None

    async def _retrying(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        s = self.settings
        count = 0

        def before_sleep(state) -> None:
            exc = state.outcome.exception()
            log.warning("openfabric step=%s app=%s retry attempt=%d reason=%s", what, self.address.app_id, state.attempt_number, exc)

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(s.retries),
                wait=wait_exponential(multiplier=s.backoff_initial, max=s.backoff_max) + wait_random(0, s.backoff_initial),
                retry=retry_if_exception(lambda e: isinstance(e, OpenfabricError) and e.retryable),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    count += 1
                    self.attempts[what] = count
                    return await fn()
        except OpenfabricError as exc:
            if count > 1 and "attempts)" not in exc.message:
                exc.message = f"{exc.message} (after {count} attempts)"
                exc.args = (exc.message,)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_capped(self, resp: httpx.Response, cap: int, what: str) -> bytes:
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > cap:
            raise TooLarge(f"{what}: answer of {int(length)} bytes is over the {cap}-byte cap")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise TooLarge(f"{what}: answer is over the {cap}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _request(self, method: str, url: str, what: str, *, cap: int, json_body: Any = None,
                       total: float | None = None, read_timeout: float | None = None, execution: bool = False) -> tuple[bytes, str]:
        """One HTTP call with a size cap and (optionally) its own total deadline; errors classified.

        Every URL, the first and each redirect's, passes the outbound rules first (tools/openfabric/outbound.py);
        the token goes only to the app's own origin. Error messages say what happened in our words (status,
        content type, size), never with the bytes the app sent."""
        assert self._http is not None, "use `async with client.session()`"
        content = json.dumps(json_body).encode("utf-8") if json_body is not None else None
        kwargs: dict[str, Any] = {}
        if read_timeout is not None:
            s = self.settings
            kwargs["timeout"] = httpx.Timeout(connect=s.connect_timeout, read=read_timeout, write=read_timeout, pool=s.connect_timeout)
        try:
            async with asyncio.timeout(total) if total else contextlib.nullcontext():
                for _hop in range(MAX_REDIRECTS + 1):
                    send_token = await self.outbound.check(url, what)
                    headers = {**({"content-type": "application/json"} if content is not None else {}),
                               **(self.auth_headers() if send_token else {})}
                    async with self._http.stream(method, url, content=content, headers=headers, **kwargs) as resp:
                        if resp.is_redirect:
                            location = resp.headers.get("location", "")
                            if resp.status_code == 303 or (resp.status_code in (301, 302) and method != "GET"):
                                method, content = "GET", None
                            url = urljoin(str(resp.url), location.strip())
                            log.info("openfabric step=%s app=%s redirect status=%d same_origin=%s", what, self.address.app_id,
                                     resp.status_code, self.outbound.is_app(url))
                            continue
                        if resp.status_code >= 400:
                            detail = f"{what}: HTTP {resp.status_code} ({_answer_shape(resp)})"
                            if resp.status_code == 401:
                                raise self._unauthorized(what, "HTTP 401")
                            if resp.status_code >= 500 or resp.status_code in (408, 429):
                                raise ServerError(detail, resp.status_code)
                            if execution and resp.status_code in (400, 422):
                                raise SchemaMismatch(detail, resp.status_code)
                            raise ClientError(detail, resp.status_code)
                        data = await self._read_capped(resp, cap, what)
                        return data, resp.headers.get("content-type", "")
                raise OutboundRefused(f"{what}: more than {MAX_REDIRECTS} redirects")
        except TimeoutError:
            raise CallTimeout(f"{what}: no complete answer within {total:.1f}s") from None
        except httpx.ConnectTimeout:
            raise CallTimeout(f"{what}: could not connect within {self.settings.connect_timeout:.1f}s") from None
        except httpx.TimeoutException as exc:
            raise CallTimeout(f"{what}: timed out ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:
            error = HostNotFound if _name_does_not_resolve(exc) else Unreachable
            where = self.address.base_url if self.outbound.is_app(url) else "an allowed host"
            raise error(f"{what}: cannot connect to {where} ({exc or type(exc).__name__})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ServerError(f"{what}: connection dropped ({type(exc).__name__})", 0) from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}") from None

    @staticmethod
    def _parse_json(data: bytes, ctype: str, what: str, error: type[OpenfabricError] = BadResponse) -> Any:
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise error(f"{what} is nested too deeply to read") from None
        except (ValueError, UnicodeDecodeError):
            raise error(f"{what} is not JSON ({describe_content(data, ctype)})") from None

    # ------------------------------------------------------------------ metadata

    async def _get_json(self, path: str, what: str, error: type[OpenfabricError]) -> Any:
        s = self.settings
        data, ctype = await self._request("GET", self.address.url(path), what, cap=s.max_schema_bytes, total=s.request_timeout)
        return self._parse_json(data, ctype, what, error)

    async def metadata(self, refresh: bool = False) -> AppMetadata:
        s = self.settings
        cached = _meta_cache.get(self.address.base_url)
        if cached and not refresh and time.monotonic() - cached.fetched_at < s.schema_ttl:
            return cached
        warnings: list[str] = []
        started = time.monotonic()
        self.step = "manifest"
        try:
            manifest = await self._retrying("manifest", lambda: self._get_json("manifest", "manifest", BadResponse))
            if not isinstance(manifest, dict):
                raise BadResponse(f"manifest is a {type(manifest).__name__}, not an object")
        except Unauthorized:
            raise
        except (ClientError, BadResponse) as exc:  # informational only: go on without it
            warnings.append(str(exc))
            manifest = {}
        self._log("manifest", "rest", started, f"name={manifest.get('name', '')!r} version={manifest.get('version', '')!r}")

        started = time.monotonic()
        self.step = "input schema"
        input_schema = await self._retrying("schema", lambda: self._get_json("schema?type=input", "input schema", BadSchema))
        if not isinstance(input_schema, dict):
            raise BadSchema(f"input schema is a {type(input_schema).__name__}, not a JSON object")
        validator_for(input_schema)
        self.step = "output schema"
        try:
            output_schema = await self._retrying("schema", lambda: self._get_json("schema?type=output", "output schema", BadSchema))
            if not isinstance(output_schema, dict):
                raise BadSchema(f"output schema is a {type(output_schema).__name__}, not a JSON object")
        except Unauthorized:
            raise
        except (ClientError, BadSchema, TooLarge) as exc:  # outputs are also recognised by content
            warnings.append(str(exc))
            output_schema = {}
        self._log("schema", "rest", started, f"input_fields={field_names(input_schema)[:20]}")
        meta = AppMetadata(manifest, input_schema, output_schema, time.monotonic(), warnings)
        _meta_cache[self.address.base_url] = meta
        return meta

    # ------------------------------------------------------------------ execution

    async def execute(self, body: Any, progress: ProgressFn = no_progress) -> tuple[Any, str]:
        """Run the app once on `body`; returns (output, transport). Retries transient failures."""
        mode = self.settings.transport.lower()
        base = self.address.base_url

        async def once() -> tuple[Any, str]:
            if mode == "sdk":
                return await self._execute_sdk(body, progress), "sdk"
            use_socket = mode == "socket" or (mode == "auto" and _socket_unavailable_until.get(base, 0) < time.monotonic())
            if use_socket:
                try:
                    return await self._execute_socket(body, progress), "socket.io"
                except SocketUnavailable as exc:
                    if mode == "socket":
                        raise
                    _socket_unavailable_until[base] = time.monotonic() + self.settings.schema_ttl
                    log.info("openfabric step=execute app=%s transport=socket.io unavailable (%s); using REST", self.address.app_id, exc)
            return await self._execute_rest(body), "rest"

        return await self._retrying("execute", once)

    async def _execute_rest(self, body: Any) -> Any:
        started = time.monotonic()
        self.step = "execution (REST)"
        s = self.settings
        data, ctype = await self._request("POST", self.address.url("execution"), "execution", cap=s.max_output_bytes, json_body=body,
                                          read_timeout=s.execution_timeout, execution=True)
        output = parse_execution_answer(data, ctype, s.max_repr_bytes)
        self._log("execute", "rest", started, f"bytes={len(data)}")
        return output

    async def _execute_socket(self, body: Any, progress: ProgressFn) -> Any:
        s = self.settings
        started = time.monotonic()
        self.step = "execution (socket.io)"
        parts = urlsplit(self.address.base_url)
        http_session = aiohttp.ClientSession(middlewares=(self._socket_guard,))  # aiohttp follows a handshake's redirects
        sio = socketio.AsyncClient(reconnection=False, ssl_verify=s.verify_tls, request_timeout=s.connect_timeout, http_session=http_session,
                                   websocket_extra_options={"max_msg_size": int(s.max_output_bytes * 1.4) + (1 << 20)})
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        rid = uuid.uuid4().hex
        seen: dict[str, Any] = {"submitted": False, "qid": None, "last": time.monotonic(), "refused": None, "pulses": 0}

        def matches(data: Any, key_path: tuple[str, ...] = ("rid",)) -> bool:
            node = data
            for key in key_path:
                node = node.get(key) if isinstance(node, dict) else None
            return node is None or node == rid

        async def on_submitted(data: Any = None) -> None:
            if isinstance(data, dict) and matches(data):
                seen["submitted"] = True
                seen["qid"] = data.get("qid")
                seen["last"] = time.monotonic()
                self._report(progress, 0.0, f"{self.label}: submitted (queue {data.get('qid') or '?'})")

        async def on_progress(data: Any = None) -> None:
            if isinstance(data, dict) and matches(data):
                seen["last"] = time.monotonic()
                fraction, message = _ray_progress(data)
                self._report(progress, fraction, f"{self.label}: {message}")

        async def on_pulse(data: Any = None) -> None:
            # a keep-alive while the app works; it may carry a ray (then it is progress) or nothing
            if not isinstance(data, dict) or matches(data):
                seen["last"] = time.monotonic()
                seen["pulses"] += 1
                if isinstance(data, dict) and ("bars" in data or "status" in data):
                    fraction, message = _ray_progress(data)
                    self._report(progress, fraction, f"{self.label}: {message}")

        async def on_response(data: Any = None) -> None:
            if isinstance(data, dict) and matches(data, ("ray", "rid")) and not done.done():
                done.set_result(data)

        async def on_restore(data: Any = None) -> None:
            # the answer to our `restore` ping: the ray again, with "output" once the execution has finished
            if not isinstance(data, dict) or not isinstance(data.get("ray"), dict) or data["ray"].get("rid") != rid:
                return
            seen["last"] = time.monotonic()
            if "output" in data and (data["ray"].get("finished") or str(data["ray"].get("status", "")).upper() in ("COMPLETED", *FAILED_STATUSES)):
                if not done.done():
                    done.set_result(data)
            else:
                fraction, message = _ray_progress(data["ray"])
                self._report(progress, fraction, f"{self.label}: {message}")

        async def on_connect_error(data: Any = None) -> None:
            seen["refused"] = data

        async def on_disconnect(*_args: Any) -> None:
            if not done.done():
                stage = "after it was submitted" if seen["submitted"] else "before it was submitted"
                done.set_exception(SocketDropped(f"socket.io connection dropped {stage}, before the response"))

        for event, handler in (("submitted", on_submitted), ("progress", on_progress), ("pulse", on_pulse), ("response", on_response),
                               ("restore", on_restore), ("connect_error", on_connect_error), ("disconnect", on_disconnect)):
            sio.on(event, handler, namespace="/app")
        path = (parts.path.rstrip("/") + "/socket.io").lstrip("/")
        url = f"{parts.scheme}://{parts.netloc}"
        token = s.token.strip()
        try:
            try:
                async with asyncio.timeout(s.connect_timeout + 1):
                    await sio.connect(url, namespaces=["/app"], transports=["websocket"], socketio_path=path, wait_timeout=s.connect_timeout,
                                      headers=self.auth_headers(), auth={"token": token} if token else None)
            except TimeoutError:
                raise SocketUnavailable(f"socket.io: could not connect within {s.connect_timeout:.1f}s") from None
            except (socketio.exceptions.ConnectionError, OSError, ValueError) as exc:
                refused = f"{seen['refused'] or ''} {exc}".lower()
                if any(word in refused for word in UNAUTHORIZED_WORDS):
                    raise self._unauthorized("socket.io connection", "UNAUTHORIZED") from None
                # an OSError is our system's words; a socket.io refusal carries the app's, which are not repeated
                why = f"{exc}" if isinstance(exc, OSError) and str(exc) else type(exc).__name__
                raise SocketUnavailable(f"socket.io connection to {url}/{path} failed ({why})") from None
            self._log("connect", "socket.io", started)
            payload = zlib.compress(json.dumps({"body": body, "header": {"uid": s.uid, "rid": rid}}).encode("utf-8"))
            await sio.emit("execute", (payload, True), namespace="/app")
            seen["last"] = time.monotonic()
            response = await self._await_with_stall_watch(done, seen, sio)
        finally:
            if not done.done():  # we are leaving (deadline, stall): our own disconnect must not set an unread error
                done.cancel()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(2):
                    await sio.disconnect()
            await http_session.close()
        output = self._parse_ray_response(response)
        self._log("execute", "socket.io", started, f"qid={seen['qid']} pulses={seen['pulses']}")
        return output

    async def _socket_guard(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        """Every request of the socket.io client (the handshake and any redirect it gets) goes to the app's own
        origin only: it carries the token, and a redirect elsewhere is the SSRF the outbound rules refuse."""
        scheme, _, rest = str(request.url).partition("://")
        scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme)
        if not self.outbound.is_app(f"{scheme}://{rest}"):
            log.warning("openfabric step=outbound app=%s refused socket.io request to another origin", self.address.app_id)
            raise OutboundRefused("socket.io connection: refused a redirect to a host other than the app's")
        return await handler(request)

    async def _await_with_stall_watch(self, done: asyncio.Future, seen: dict, sio: socketio.AsyncClient) -> Any:
        """Wait for the response. As the SDK's Proxy does, ask for the state (`restore` with the queue id) after
        RESTORE_AFTER seconds without an update, and give up when the app has said nothing at all (submitted,
        pulse, progress, restore) for `stall_timeout` (the Proxy: 15 s). The total deadline bounds it all."""
        stall = self.settings.stall_timeout
        asked_at = 0.0
        while True:
            quiet = time.monotonic() - seen["last"]
            if stall > 0 and quiet >= stall:
                raise CallTimeout(f"socket.io: no update from the app for {quiet:.1f}s (stall timeout {stall:.0f}s)")
            if quiet >= RESTORE_AFTER and seen["qid"] and time.monotonic() - asked_at >= RESTORE_AFTER:
                asked_at = time.monotonic()
                with contextlib.suppress(Exception):
                    await sio.emit("restore", seen["qid"], namespace="/app")
            limits = [RESTORE_AFTER / 2] + ([stall - quiet] if stall > 0 else [])
            finished, _ = await asyncio.wait({done}, timeout=max(0.05, min(limits)))  # leaves `done` alone on a timeout
            if finished:
                return done.result()

    async def _execute_sdk(self, body: Any, progress: ProgressFn) -> Any:
        """One execution through openfabric_pysdk's Proxy (0.2.9), in a worker thread (its API blocks).

        The Proxy starts two non-daemon threads and reconnects forever while it lives, so one Proxy is made per
        execution and always disconnected here; a stop flag ends the wait when our deadline cancels us."""
        s = self.settings
        started = time.monotonic()
        self.step = "execution (sdk)"
        if s.token.strip():
            raise ClientError("sdk transport: openfabric_pysdk's Proxy cannot send a token (it has no header or auth option); "
                              "use ATELIER_OPENFABRIC_TRANSPORT=socket or rest for a locked app", 0)
        try:
            from openfabric_pysdk.helper.proxy import Proxy
        except ImportError as exc:
            raise ClientError(f"sdk transport: openfabric_pysdk is not importable ({exc})", 0) from None
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        holder: dict[str, Any] = {"rid": None, "early": []}
        lock = threading.Lock()
        parts = urlsplit(self.address.base_url)
        url = f"{parts.scheme}://{parts.netloc}"

        def report(data: dict) -> None:
            fraction, message = _ray_progress(data)
            loop.call_soon_threadsafe(self._report, progress, fraction, f"{self.label}: {message}")

        def on_progress(data: Any) -> None:
            if not isinstance(data, dict):
                return
            with lock:
                if holder["rid"] is None:  # an event may beat request() returning our rid: keep it until then
                    holder["early"].append(data)
                    return
            if data.get("rid") == holder["rid"]:
                report(data)

        def work() -> dict:
            proxy = Proxy(url, f"atelier-{self.address.app_id}")  # blocks up to 3 s waiting for the connection
            try:
                if not proxy.is_connected():
                    raise SocketUnavailable(f"sdk transport: the Proxy could not connect to {url} within 3 s")
                proxy.register("progress", on_progress)
                proxy.register("submitted", on_progress)
                execution = proxy.request(body, s.uid)
                with lock:
                    holder["rid"] = execution.request_id()
                    early, holder["early"] = holder["early"], []
                for data in early:
                    if data.get("rid") == holder["rid"]:
                        report(data)
                while not stop.is_set():
                    if execution.wait(0.5):
                        break
                    if execution.status() == "CANCELLED":  # the Proxy's own 15 s no-update watchdog
                        break
                return {"ray": {"status": execution.status(), "messages": execution.messages(), "rid": holder["rid"]},
                        "output": execution.data(), "qid": execution.request_qid()}
            finally:
                proxy.disconnect()

        future = loop.run_in_executor(None, work)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, also when we stopped waiting for it
        try:
            response = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()  # the worker sees it within 0.5 s and disconnects its Proxy
            raise
        status = str(response["ray"]["status"]).upper()
        if status == "CANCELLED" and response["output"] is None:
            raise SocketDropped("sdk transport: the Proxy cancelled the execution (no update from the app for 15 s)")
        output = self._parse_ray_response(response)
        self._log("execute", "sdk", started, f"qid={response.get('qid')}")
        return output

    def _parse_ray_response(self, response: Any) -> Any:
        if not isinstance(response, dict):
            raise BadResponse(f"socket.io response is a {type(response).__name__}, not an object")
        ray = response.get("ray") if isinstance(response.get("ray"), dict) else {}
        status = str(ray.get("status") or "").upper().strip("(),' ")
        messages = [str(m.get("content", m)) if isinstance(m, dict) else str(m) for m in (ray.get("messages") or []) if m]
        text = "; ".join(messages)[:300]
        # the app's own message goes to the log (escaped), not into the reason a user reads: it is the app's text
        said = f"with a message of {len(text)} characters (in the log)" if text else "without a message"
        if text and (status in FAILED_STATUSES or status in ("UNAUTHORIZED", "UNAUTHORISED")):
            log.warning("openfabric step=execute app=%s status=%s app_message=%r", self.address.app_id, status, text[:300])
        if status in ("UNAUTHORIZED", "UNAUTHORISED") or (status in FAILED_STATUSES and "unauthori" in text.lower()):
            raise self._unauthorized("socket.io execution", "UNAUTHORIZED")
        if status in FAILED_STATUSES:
            if any(word in text.lower() for word in SCHEMA_WORDS):
                raise SchemaMismatch(f"the app rejected the input as not matching its schema ({status}, {said})", 0)
            raise BadResponse(f"the app reported {status} {said}")
        output = response.get("output")
        if output is None:
            known = status if status in KNOWN_STATUSES else "unknown" if not status else "not a known status"
            raise BadResponse(f"socket.io response without output (status {known})")
        if isinstance(output, str) and output.lstrip()[:1] in ("{", "["):  # an output sent as its repr / JSON text
            output = parse_execution_answer(output.encode("utf-8"), "", self.settings.max_repr_bytes)
        return output

    def _report(self, progress: ProgressFn, fraction: float | None, message: str) -> None:
        try:
            progress(fraction, message)
        except Exception:  # a broken progress sink must not break generation
            log.debug("progress callback failed", exc_info=True)

    # ------------------------------------------------------------------ resources

    async def fetch(self, ref: str, field_path: str) -> tuple[bytes, str]:
        s = self.settings
        if ref.lower().startswith(("http://", "https://")):
            url, what = ref, f"resource URL in '{field_path}'"
        else:
            url, what = self.address.url(f"resource?reid={quote(ref, safe='')}"), f"resource in '{field_path}'"
        started = time.monotonic()
        self.step = what

        async def once() -> tuple[bytes, str]:
            return await self._request("GET", url, what, cap=s.max_output_bytes, read_timeout=s.request_timeout)

        data, ctype = await self._retrying("resource", once)
        data, ctype = _unwrap_resource(data, ctype, s.max_output_bytes)
        self._log("resource", "rest", started, f"field={field_path} bytes={len(data)} content_type={ctype!r}")
        return data, ctype

    # ------------------------------------------------------------------ the whole thing

    async def generate(self, kind: str, values: ToolValues, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        s = self.settings
        started = time.monotonic()
        try:
            self.breaker.before_call()
        except CircuitOpen as exc:
            log.warning("openfabric step=breaker app=%s open retry_in=%.0f", self.address.app_id, exc.retry_in)
            raise BackendError(f"circuit open for openfabric app {self.address.app_id} ({self.address.base_url}); "
                               f"retry in {exc.retry_in:.0f}s; last failure: {exc.last_reason}", transient=True, backend="openfabric") from None
        try:
            async with self.session():
                try:
                    async with asyncio.timeout(s.execution_timeout):
                        assets = await self._generate(kind, values, progress)
                except TimeoutError:
                    raise CallTimeout(f"no complete answer within the {s.execution_timeout:.1f}s deadline (during {self.step})") from None
        except OpenfabricError as exc:
            if exc.health == "hard":
                self.breaker.record_failure(str(exc), hard=True)
            elif exc.health == "soft":
                self.breaker.record_failure(str(exc))
            else:
                self.breaker.record_neutral()
            self._log("failed", "-", started, f"error={type(exc).__name__} reason={exc}")
            raise BackendError(f"openfabric {kind} app {self.address.app_id} ({self.address.base_url}): {exc}",
                               transient=exc.transient, backend="openfabric") from exc
        except BackendError:
            self.breaker.record_neutral()
            raise
        except Exception as exc:  # a bug or an unforeseen library error: still a clear reason, and fall back
            self.breaker.record_neutral()
            log.exception("openfabric app=%s unexpected error", self.address.app_id)
            raise BackendError(f"openfabric {kind} app {self.address.app_id}: unexpected {type(exc).__name__}: {exc}",
                               transient=True, backend="openfabric") from exc
        self.breaker.record_success()
        self._log("done", assets[0].metadata.get("transport", "-"), started, f"assets={len(assets)}")
        return assets

    async def _generate(self, kind: str, values: ToolValues, progress: ProgressFn) -> list[GeneratedAsset]:
        started = time.monotonic()
        self._report(progress, None, f"{self.label}: reading the app's manifest and schema")
        meta = await self.metadata()
        self.step = "input mapping"
        mapped = build_input(meta.input_schema, values, kind=kind)
        self._report(progress, 0.0, f"{self.label}: sending {', '.join(mapped.fields)}")
        try:
            output, transport = await self.execute(mapped.body, progress)
        except SchemaMismatch as exc:
            fresh = await self.metadata(refresh=True)
            if fresh.input_schema == meta.input_schema:
                raise
            log.info("openfabric step=schema app=%s schema changed after %s; rebuilding the input", self.address.app_id, exc)
            meta = fresh
            mapped = build_input(meta.input_schema, values, kind=kind)
            output, transport = await self.execute(mapped.body, progress)
        self.step = "output"
        extraction = await extract(output, meta.output_schema, self.fetch, max_bytes=self.settings.max_output_bytes,
                                   limits=AssetLimits.from_settings(self.settings))
        chosen = _choose(extraction, kind)
        seconds = round(time.monotonic() - started, 3)
        base_meta = {
            "app_id": self.address.app_id,
            "app_url": self.address.base_url,
            "app_version": meta.version,
            "manifest": meta.trimmed_manifest(),
            "transport": transport,
            "input_fields": dict(mapped.assigned),
            "attempts": dict(self.attempts),
            "seconds": seconds,
        }
        seed = _seed_sent(mapped)
        if seed is not None:
            base_meta["seed"] = seed
        warnings = meta.warnings + extraction.problems
        if warnings:
            base_meta["warnings"] = warnings[:10]
        assets = []
        for found in chosen:
            metadata = copy.deepcopy(base_meta)
            metadata.update({"field": found.field, "source": found.source, "format": found.format,
                             "sha256": hashlib.sha256(found.data).hexdigest(), "bytes": len(found.data)})
            assets.append(GeneratedAsset(kind=found.kind, data=found.data, mime=found.mime, backend="openfabric", metadata=metadata))
        received = ", ".join(f"{a.metadata['format']} ({a.metadata['bytes']} bytes)" for a in assets)
        self._report(progress, 1.0, f"{self.label}: received {received}")
        return assets


# ---------------------------------------------------------------------- helpers


def _ray_progress(ray: dict) -> tuple[float | None, str]:
    fraction = None
    bars = ray.get("bars")
    if isinstance(bars, dict) and bars:
        bar = bars.get("default") if isinstance(bars.get("default"), dict) else next((b for b in bars.values() if isinstance(b, dict)), None)
        if bar is not None:
            try:
                fraction = max(0.0, min(1.0, float(bar.get("percent", 0)) / 100.0))
            except (TypeError, ValueError):
                fraction = None
    status = str(ray.get("status") or "running").upper().strip("(),' ")
    # the app's messages are its own text: progress shows our words (a known status, the fraction) only
    word = status.lower() if status in KNOWN_STATUSES else "working"
    message = word + (f" {fraction:.0%}" if fraction is not None else "")
    return fraction, message


def _unwrap_resource(data: bytes, ctype: str, cap: int) -> tuple[bytes, str]:
    """Some nodes wrap a resource in JSON (base64 or data: URI); unwrap it when the bytes are not media."""
    if sniff(data) is not None:
        return data, ctype
    head = data[:1].strip() or data.lstrip()[:1]
    if "json" in ctype.lower() or head in (b"{", b'"'):
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return data, ctype
        candidates = [doc] if isinstance(doc, str) else [v for v in doc.values() if isinstance(v, str)] if isinstance(doc, dict) else []
        from .output import _decode_base64, _decode_data_uri

        for text in candidates:
            try:
                if text.startswith("data:"):
                    inner, mime = _decode_data_uri(text, cap, "resource")
                else:
                    inner, mime = _decode_base64(text, cap, "resource"), ""
            except BadResponse:
                continue
            if inner is not None and sniff(inner) is not None:
                return inner, mime or ctype
    return data, ctype


def parse_execution_answer(data: bytes, ctype: str, cap: int) -> Any:
    """An execution answer -> its value. JSON first; else the Python repr the apps answer with (single quotes,
    None, True), read by ast.literal_eval - never eval - on a body of at most `cap` bytes, and only plain
    literals (dict, list, tuple, str, numbers, bool, None) are accepted."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadResponse("execution output is nested too deeply to read") from None
    except ValueError:  # UnicodeDecodeError included
        value = _literal(data, ctype, cap)
    else:
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):  # JSON text holding the repr of the output
            value = _literal(value.encode("utf-8"), ctype, cap)
    return value


def _literal(data: bytes, ctype: str, cap: int) -> Any:
    if len(data) > cap:
        raise TooLarge(f"execution output: a {len(data)}-byte answer that is not JSON is over the {cap}-byte cap for Python literals")
    try:
        text = data.decode("utf-8")
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise BadResponse(f"execution output is neither JSON nor a Python literal ({describe_content(data, ctype)}; "
                          f"{type(exc).__name__})") from None
    _check_plain(value, 0)
    return value


def _check_plain(value: Any, depth: int) -> None:
    if depth > MAX_LITERAL_DEPTH:
        raise BadResponse(f"execution output is nested more than {MAX_LITERAL_DEPTH} levels deep")
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadResponse(f"execution output has a non-string key {type(key).__name__}")
            _check_plain(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
        return
    raise BadResponse(f"execution output holds a {type(value).__name__}, which no app output contains")


def _choose(extraction: Extraction, kind: str) -> list[FoundAsset]:
    unique: list[FoundAsset] = []
    seen: set[str] = set()
    for asset in extraction.assets:
        digest = hashlib.sha256(asset.data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(asset)
    primary = [a for a in unique if a.kind == kind]
    if not primary and extraction.failed:
        raise GenerationFailed(f"the app's generation failed: {'; '.join(extraction.failed)}")
    if not primary:
        fields = ", ".join(extraction.fields_seen) or "none"
        problems = "; ".join(extraction.problems)
        other = ", ".join(f"{a.field}={a.format}" for a in unique)
        raise BadResponse(f"no {kind} in the app's output (fields: {fields}" + (f"; found {other}" if other else "") + (f"; {problems}" if problems else "") + ")")
    extras = [a for a in unique if a.kind == "video"] if kind == "model" else []
    return primary + extras


def _seed_sent(mapped: MappedInput) -> Any:
    for path, role in mapped.assigned.items():
        if role in ("seed", "random") and "seed" in path.lower():
            node = mapped.body[0] if isinstance(mapped.body, list) else mapped.body
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            return node
    return None


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="openfabric") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def generate_sync(app: str, kind: str, values: ToolValues, progress: ProgressFn = no_progress,
                  settings: OpenfabricSettings | None = None, label: str = "") -> list[GeneratedAsset]:
    try:
        client = OpenfabricClient(app, settings, label=label)
    except ValueError as exc:
        raise BackendError(f"openfabric {kind} app: {exc}", transient=False, backend="openfabric") from None
    return run_sync(lambda: client.generate(kind, values, progress))


def _answer_shape(resp: httpx.Response) -> str:
    """An error answer described without its bytes: content type and declared size."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip()[:60] or "no content type"
    length = resp.headers.get("content-length", "")
    return f"{ctype}, {int(length)} bytes" if length.isdigit() else ctype


def _name_does_not_resolve(exc: BaseException) -> bool:
    """Whether a connection failed because the host name has no address (not "try again later": EAI_AGAIN)."""
    permanent = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return exc.errno in permanent
        exc = exc.__cause__ or exc.__context__
    return False
