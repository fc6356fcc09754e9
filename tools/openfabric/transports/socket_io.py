"""Our own socket.io client, the protocol of openfabric_pysdk.helper.proxy.Proxy (0.2.9): namespace /app, `execute`
with (zlib(JSON {"body", "header": {"uid", "rid"}}), background flag), answered by `submitted` / `pulse` /
`progress` / `response` ({output, ray, output_ts}); `restore` with the queue id asks for the state. One connection
per execution; every request it makes (the handshake and its redirects) goes to the app's own origin only."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import zlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import socketio

from tools.backends.base import ProgressFn

from ..answers import FAILED_STATUSES, ray_progress
from ..errors import CallTimeout, OutboundRefused, SocketDropped, SocketUnavailable
from .base import Transport

log = logging.getLogger("atelier.openfabric")

RESTORE_AFTER = 5.0  # seconds without an update before asking for the state, as the SDK's Proxy does
UNAUTHORIZED_WORDS = ("unauthorized", "unauthorised", "401")


class SocketIOTransport(Transport):
    name = "socket.io"

    async def execute(self, body: Any, progress: ProgressFn) -> Any:
        s = self.client.settings
        started = time.monotonic()
        self.client.step = "execution (socket.io)"
        parts = urlsplit(self.client.address.base_url)
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
                self.client.report(progress, 0.0, f"{self.client.label}: submitted (queue {data.get('qid') or '?'})")

        async def on_progress(data: Any = None) -> None:
            if isinstance(data, dict) and matches(data):
                seen["last"] = time.monotonic()
                fraction, message = ray_progress(data)
                self.client.report(progress, fraction, f"{self.client.label}: {message}")

        async def on_pulse(data: Any = None) -> None:
            # a keep-alive while the app works; it may carry a ray (then it is progress) or nothing
            if not isinstance(data, dict) or matches(data):
                seen["last"] = time.monotonic()
                seen["pulses"] += 1
                if isinstance(data, dict) and ("bars" in data or "status" in data):
                    fraction, message = ray_progress(data)
                    self.client.report(progress, fraction, f"{self.client.label}: {message}")

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
                fraction, message = ray_progress(data["ray"])
                self.client.report(progress, fraction, f"{self.client.label}: {message}")

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
                                      headers=self.client.auth_headers(), auth={"token": token} if token else None)
            except TimeoutError:
                raise SocketUnavailable(f"socket.io: could not connect within {s.connect_timeout:.1f}s") from None
            except (socketio.exceptions.ConnectionError, OSError, ValueError) as exc:
                refused = f"{seen['refused'] or ''} {exc}".lower()
                if any(word in refused for word in UNAUTHORIZED_WORDS):
                    raise self.client.unauthorized("socket.io connection", "UNAUTHORIZED") from None
                # an OSError is our system's words; a socket.io refusal carries the app's, which are not repeated
                why = f"{exc}" if isinstance(exc, OSError) and str(exc) else type(exc).__name__
                raise SocketUnavailable(f"socket.io connection to {url}/{path} failed ({why})") from None
            self.client.log_step("connect", "socket.io", started)
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
        output = self.parse_ray_response(response)
        self.client.log_step("execute", "socket.io", started, f"qid={seen['qid']} pulses={seen['pulses']}")
        return output

    async def _socket_guard(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        """Every request of the socket.io client (the handshake and any redirect it gets) goes to the app's own
        origin only: it carries the token, and a redirect elsewhere is the SSRF the outbound rules refuse."""
        scheme, _, rest = str(request.url).partition("://")
        scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme)
        if not self.client.outbound.is_app(f"{scheme}://{rest}"):
            log.warning("openfabric step=outbound app=%s refused socket.io request to another origin", self.client.address.app_id)
            raise OutboundRefused("socket.io connection: refused a redirect to a host other than the app's")
        return await handler(request)

    async def _await_with_stall_watch(self, done: asyncio.Future, seen: dict, sio: socketio.AsyncClient) -> Any:
        """Wait for the response. As the SDK's Proxy does, ask for the state (`restore` with the queue id) after
        RESTORE_AFTER seconds without an update, and give up when the app has said nothing at all (submitted,
        pulse, progress, restore) for `stall_timeout` (the Proxy: 15 s). The total deadline bounds it all."""
        stall = self.client.settings.stall_timeout
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

