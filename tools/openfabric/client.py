"""Openfabric app client: manifest + schemas (cached), socket.io or REST execution, resources, faults.

One `generate` call runs under a single total deadline (`execution_timeout`), so a slow or trickling app
cannot hold it longer than that whatever its per-read behaviour. Inside the deadline each call is retried
with exponential backoff and jitter when the failure is transient (connection error, 5xx, dropped socket);
4xx and schema errors are not retried. A circuit breaker per app refuses requests at once after the app
proved dead. The protocol is that of openfabric_pysdk.helper.proxy.Proxy (0.2.9): socket.io namespace
/app, `execute` with (zlib(JSON {"body", "header": {"uid", "rid"}}), background flag), answers
`submitted` / `pulse` / `progress` / `response` ({output, ray, output_ts}); REST POST /execution (answered
with the Python repr of the output, read with ast.literal_eval); GET /manifest, /schema?type=...,
/resource?reid=<resource id>. Three execution transports, one module each under tools/openfabric/transports/:
our own socket.io client (`socket`, socket_io.py), the SDK's Proxy (`sdk`, sdk.py), and REST (`rest`, rest.py);
`auto` is our socket.io client with REST as the fallback. This module chooses among them
(ATELIER_OPENFABRIC_TRANSPORT) and owns what they share: the HTTP session and its outbound rules, retries, the
deadline, the circuit breaker, metadata, resources, and turning an output into assets. Answers are read by
tools/openfabric/answers.py.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import hashlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from tools.backends.base import BackendError, GeneratedAsset, ProgressFn, no_progress

from .breaker import CircuitOpen, breaker_for, reset_breakers
from .config import AppAddress, OpenfabricSettings, get_openfabric_settings, resolve_app
from .errors import (
    BadResponse,
    BadSchema,
    CallTimeout,
    ClientError,
    GenerationFailed,
    HostNotFound,
    OpenfabricError,
    OutboundRefused,
    SchemaMismatch,
    ServerError,
    SocketUnavailable,
    TooLarge,
    Unauthorized,
    Unreachable,
)
from .outbound import MAX_REDIRECTS, OutboundPolicy, parse_allowed_hosts
from .output import AssetLimits, Extraction, FoundAsset, describe_content, extract, sniff
from .schema_mapping import MappedInput, ToolValues, build_input, field_names, validator_for
from .transports import RestTransport, SdkTransport, SocketIOTransport, Transport

log = logging.getLogger("atelier.openfabric")
T = TypeVar("T")

MANIFEST_KEYS = ("name", "version", "description", "organization", "sdk", "overview")


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

    def unauthorized(self, what: str, detail: str) -> Unauthorized:  # detail: our words, never the app's
        hint = ("the token in ATELIER_OPENFABRIC_TOKEN was refused" if self.settings.token.strip()
                else "the app is locked and no token is set (ATELIER_OPENFABRIC_TOKEN)")
        return Unauthorized(f"{what}: unauthorized ({detail}); {hint}")

    def log_step(self, step: str, transport: str, started: float, extra: str = "") -> None:
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

    async def request(self, method: str, url: str, what: str, *, cap: int, json_body: Any = None,
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
                                raise self.unauthorized(what, "HTTP 401")
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
        data, ctype = await self.request("GET", self.address.url(path), what, cap=s.max_schema_bytes, total=s.request_timeout)
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
        self.log_step("manifest", "rest", started, f"name={manifest.get('name', '')!r} version={manifest.get('version', '')!r}")

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
        self.log_step("schema", "rest", started, f"input_fields={field_names(input_schema)[:20]}")
        meta = AppMetadata(manifest, input_schema, output_schema, time.monotonic(), warnings)
        _meta_cache[self.address.base_url] = meta
        return meta

    # ------------------------------------------------------------------ execution

    async def execute(self, body: Any, progress: ProgressFn = no_progress) -> tuple[Any, str]:
        """Run the app once on `body`; returns (output, transport). Retries transient failures."""
        mode = self.settings.transport.lower()
        base = self.address.base_url

        async def run(transport: type[Transport]) -> tuple[Any, str]:
            return await transport(self).execute(body, progress), transport.name

        async def once() -> tuple[Any, str]:
            if mode == "sdk":
                return await run(SdkTransport)
            use_socket = mode == "socket" or (mode == "auto" and _socket_unavailable_until.get(base, 0) < time.monotonic())
            if use_socket:
                try:
                    return await run(SocketIOTransport)
                except SocketUnavailable as exc:
                    if mode == "socket":
                        raise
                    _socket_unavailable_until[base] = time.monotonic() + self.settings.schema_ttl
                    log.info("openfabric step=execute app=%s transport=socket.io unavailable (%s); using REST", self.address.app_id, exc)
            return await run(RestTransport)

        return await self._retrying("execute", once)

    def report(self, progress: ProgressFn, fraction: float | None, message: str) -> None:
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
            return await self.request("GET", url, what, cap=s.max_output_bytes, read_timeout=s.request_timeout)

        data, ctype = await self._retrying("resource", once)
        data, ctype = _unwrap_resource(data, ctype, s.max_output_bytes)
        self.log_step("resource", "rest", started, f"field={field_path} bytes={len(data)} content_type={ctype!r}")
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
            self.log_step("failed", "-", started, f"error={type(exc).__name__} reason={exc}")
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
        self.log_step("done", assets[0].metadata.get("transport", "-"), started, f"assets={len(assets)}")
        return assets

    async def _generate(self, kind: str, values: ToolValues, progress: ProgressFn) -> list[GeneratedAsset]:
        started = time.monotonic()
        self.report(progress, None, f"{self.label}: reading the app's manifest and schema")
        meta = await self.metadata()
        self.step = "input mapping"
        mapped = build_input(meta.input_schema, values, kind=kind)
        self.report(progress, 0.0, f"{self.label}: sending {', '.join(mapped.fields)}")
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
        self.report(progress, 1.0, f"{self.label}: received {received}")
        return assets


# ---------------------------------------------------------------------- helpers


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
