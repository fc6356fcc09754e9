"""Which routes the API server answers, and the middleware in front of every one of them: RequestGuard answers
only the routes in ALLOWED_ROUTES (deny by default: the runtime's /internal/*, /deploy, /metrics ... get 404),
refuses oversized bodies and ambiguous identities, and keeps server paths out of answers (relative_paths). See
docs/api-hardening.md.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from langgraph_sdk import Auth
from starlette.responses import JSONResponse

from agent.api.auth import USER_HEADER, api_keys, body_limit, identify, max_body_bytes
from memory.validation import shown

log = logging.getLogger("atelier.api")


# -- which routes the server answers: deny by default ----------------------------------------------------------
# Every (method, path) the server answers must match a row here; anything else — the in-memory runtime's
# /internal/* and /deploy, /metrics, /info, crons, the store, a2a, ui, and whatever a langgraph-api upgrade adds —
# is answered 404 by RequestGuard before it reaches a route. "open": anyone, and the answer reveals nothing (the
# health check of load balancers and compose). "caller": with ATELIER_API_KEYS only a valid bearer token passes
# the guard; then the runtime's auth (agent.api.auth:auth) scopes the route to the caller. `python -m agent.api.server
# --routes` prints the server's whole route table with each route's verdict.
ALLOWED_ROUTES: tuple[tuple[str, str, str], ...] = (
    # Atelier's own routes (agent/api/routes.py)
    ("GET", "/assets/{sha256}", "caller"),
    ("GET", "/creations", "caller"),
    ("GET", "/creations/{creation_id}", "caller"),
    ("DELETE", "/creations/{creation_id}", "caller"),
    ("POST", "/creations", "caller"),  # a picture of the user's own (agent/uploads.py)
    ("GET", "/creations/{creation_id}/export", "caller"),  # glb/obj/stl/3mf/ply (tools/export.py)
    ("GET", "/atelier/health", "caller"),
    # Atelier's MCP server (agent/mcp_server.py; langgraph-api's generic /mcp is off: http.disable_mcp)
    ("GET", "/mcp", "caller"), ("POST", "/mcp", "caller"), ("DELETE", "/mcp", "caller"),
    # the server's own meta routes
    ("GET", "/ok", "open"),
    ("GET", "/openapi.json", "caller"),
    ("GET", "/docs", "caller"),
    # assistants: shared; reading for everyone, changes for admins (on_assistants)
    ("POST", "/assistants", "caller"),
    ("POST", "/assistants/search", "caller"),
    ("POST", "/assistants/count", "caller"),
    ("GET", "/assistants/{assistant_id}", "caller"),
    ("PATCH", "/assistants/{assistant_id}", "caller"),
    ("DELETE", "/assistants/{assistant_id}", "caller"),
    ("GET", "/assistants/{assistant_id}/graph", "caller"),
    ("GET", "/assistants/{assistant_id}/schemas", "caller"),
    ("GET", "/assistants/{assistant_id}/subgraphs", "caller"),
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}", "caller"),
    ("POST", "/assistants/{assistant_id}/versions", "caller"),
    ("POST", "/assistants/{assistant_id}/latest", "caller"),
    # threads: the caller's own (on_thread_create, on_thread_search, on_threads)
    ("POST", "/threads", "caller"),
    ("POST", "/threads/search", "caller"),
    ("POST", "/threads/count", "caller"),
    ("GET", "/threads/{thread_id}", "caller"),
    ("PATCH", "/threads/{thread_id}", "caller"),
    ("DELETE", "/threads/{thread_id}", "caller"),
    ("GET", "/threads/{thread_id}/state", "caller"),
    ("POST", "/threads/{thread_id}/state", "caller"),
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}", "caller"),
    ("POST", "/threads/{thread_id}/state/checkpoint", "caller"),
    ("GET", "/threads/{thread_id}/history", "caller"),
    ("POST", "/threads/{thread_id}/history", "caller"),
    ("GET", "/threads/{thread_id}/stream", "caller"),
    # runs: on the caller's threads (on_run_create, on_threads), or on a new thread of theirs (stateless)
    ("POST", "/threads/{thread_id}/runs", "caller"),
    ("GET", "/threads/{thread_id}/runs", "caller"),
    ("POST", "/threads/{thread_id}/runs/stream", "caller"),
    ("POST", "/threads/{thread_id}/runs/wait", "caller"),
    ("GET", "/threads/{thread_id}/runs/{run_id}", "caller"),
    ("DELETE", "/threads/{thread_id}/runs/{run_id}", "caller"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/join", "caller"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream", "caller"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel", "caller"),
    ("POST", "/runs", "caller"),
    ("POST", "/runs/stream", "caller"),
    ("POST", "/runs/wait", "caller"),
    ("POST", "/runs/cancel", "caller"),
)


def _route_pattern(path: str) -> re.Pattern:
    """'/threads/{thread_id}/state' -> a regex matching exactly one path segment per placeholder."""
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


_ALLOWED = [(method, _route_pattern(path), access) for method, path, access in ALLOWED_ROUTES]


def route_access(method: str, path: str) -> str | None:
    """The allow-list's verdict for a request: "open", "caller", or None (not answered: 404). HEAD is GET; a CORS
    preflight (OPTIONS) is let through on allowed paths only."""
    method = "GET" if method == "HEAD" else method
    for allowed_method, pattern, access in _ALLOWED:
        if pattern.match(path) and (allowed_method == method or method == "OPTIONS"):
            return "open" if method == "OPTIONS" else access
    return None


def route_table(app) -> list[tuple[str, str]]:
    """(method, path template) of every route an ASGI Starlette app answers, walking mounts; WebSocket routes are
    ("WEBSOCKET", path), a mounted app without routes (static files) is ("*", prefix + "/{path}")."""
    from starlette.routing import Mount, Route, WebSocketRoute

    table: list[tuple[str, str]] = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                inner = getattr(route, "routes", None)
                if inner:
                    walk(inner, prefix + route.path)
                else:
                    table.append(("*", prefix + route.path + "/{path}"))
            elif isinstance(route, WebSocketRoute):
                table.append(("WEBSOCKET", prefix + route.path))
            elif isinstance(route, Route):
                for method in sorted(route.methods or {"GET"}):
                    if method != "HEAD":
                        table.append((method, prefix + route.path))
            else:  # a route kind Starlette may add: listed, so the gate's check at start-up sees it
                table.append(("*", prefix + getattr(route, "path", "/?")))

    walk(getattr(app, "routes", []), "")
    return table


class RequestGuard:
    """ASGI middleware in front of every route (langgraph.json's http app: the server puts its middleware outside
    its own, before auth and routing; lifespan() in agent/api/app.py checks that at start-up and refuses to start otherwise):

      * deny by default: a request whose method and path are not in ALLOWED_ROUTES is answered 404, whatever
        route the runtime would have matched; with ATELIER_API_KEYS, an allowed route other than /ok also needs
        a valid bearer token here (the runtime's auth does not cover its meta routes such as /openapi.json).
      * a body larger than ATELIER_API_MAX_BODY_BYTES is refused by its Content-Length before a byte is read
        (413); a chunked one is cut off at the same size by the runtime (HTTP_MAX_REQUEST_BODY_BYTES, set by
        serve()). A 20 MB message never reaches the JSON parser, the graph or the store.
      * X-Atelier-User sent twice, or not valid UTF-8, is refused (400): a proxy's header and a client's must not
        silently pick a winner, and two different undecodable names must not become the same user.
      * server paths never leave in an answer: the data dir's absolute path in a response body (thread state and
        tool results carry asset paths) is cut to the path relative to it (see relative_paths()).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            problem = self.admit(scope["type"], scope.get("method", "GET"), scope.get("path", ""), scope.get("headers") or [])
            if problem is not None:
                status, detail, headers = problem
                if scope["type"] == "websocket":  # closed before it is accepted: the client sees 403
                    return await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
                response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
                return await response(scope, receive, send)
            if scope["type"] == "http" and scope.get("path") == "/ok":
                scope = {**scope, "query_string": b""}  # the open health check answers one thing: up
            if scope["type"] == "http":
                return await self.app(scope, receive, relative_paths(send))
        return await self.app(scope, receive, send)

    @classmethod
    def admit(cls, kind: str, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, str, dict] | None:
        access = route_access("WEBSOCKET" if kind == "websocket" else method, path)
        if access is None:
            log.info("step=api_route status=refused method=%s path=%s", method if kind == "http" else "WEBSOCKET", shown(path, 80))
            return 404, "Not Found", {}
        problem = cls.check(headers, path)
        if problem is not None:
            return (*problem, {})
        if access == "caller" and method != "OPTIONS" and api_keys():
            authorization = next((v.decode("latin-1") for k, v in headers if k.lower() == b"authorization"), None)
            try:
                identify({}, authorization)
            except Auth.exceptions.HTTPException as exc:
                return 401, exc.detail, {"WWW-Authenticate": "Bearer"}
        return None

    @staticmethod
    def check(headers: list[tuple[bytes, bytes]], path: str = "") -> tuple[int, str] | None:
        users = [v for k, v in headers if k.lower() == USER_HEADER.encode()]
        if len(users) > 1:
            return 400, "X-Atelier-User was sent more than once"
        if users:
            try:
                users[0].decode("utf-8")
            except UnicodeDecodeError:
                return 400, "X-Atelier-User is not valid UTF-8"
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        limit = body_limit(path)
        if lengths:
            try:
                length = int(lengths[-1])
            except ValueError:
                return 400, "Content-Length is not a number"
            if length > limit:
                setting = "ATELIER_UPLOAD_MAX_BYTES" if limit != max_body_bytes() else "ATELIER_API_MAX_BODY_BYTES"
                return 413, f"request body is {length} bytes; the limit is {limit} ({setting})"
        return None


def _data_dir_prefixes() -> list[bytes]:
    from memory.settings import get_settings as memory_settings

    data_dir = Path(memory_settings().data_dir).resolve()
    prefixes = {str(data_dir), str(Path(memory_settings().data_dir))}
    return sorted({(p.rstrip("/") + "/").encode() for p in prefixes if p.startswith("/")}, key=len, reverse=True)


def relative_paths(send):
    """Wrap an ASGI send so that '<data dir>/' in a JSON or text response is dropped: the thread state, tool
    results and replies name assets by their absolute path on the server (what the CLI and the in-process studio
    open), and a client must see only what resolves through GET /assets/{sha256} (the sha256 is beside every
    path). A fixed body is rewritten whole (its Content-Length follows); a stream chunk by chunk, holding back
    only a tail that is the start of a prefix cut across two chunks (so an event is never delayed otherwise).
    Files (/assets) and compressed bodies pass untouched."""
    prefixes = _data_dir_prefixes()
    if not prefixes:
        return send
    state: dict[str, Any] = {"start": None, "buffered": [], "mode": None, "tail": b""}

    def scrub(data: bytes) -> bytes:
        for prefix in prefixes:
            data = data.replace(prefix, b"")
        return data

    def partial_tail(data: bytes) -> int:
        """Length of the longest end of data that is the beginning of a prefix (0 if none)."""
        best = 0
        for prefix in prefixes:
            for k in range(min(len(prefix) - 1, len(data)), best, -1):
                if data.endswith(prefix[:k]):
                    best = k
                    break
        return best

    async def wrapped(message):
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers") or [])
            names = {k.lower(): v for k, v in headers}
            ctype = names.get(b"content-type", b"").split(b";")[0].strip().lower()
            textual = ctype.startswith(b"text/") or ctype.endswith(b"json")
            state["mode"] = "pass" if not textual or b"content-encoding" in names else \
                "buffer" if b"content-length" in names else "stream"
            state["start"] = {**message, "headers": headers}
            if state["mode"] != "buffer":
                await send(state["start"])
            return
        if kind != "http.response.body" or state["mode"] == "pass":
            return await send(message)
        body, more = message.get("body", b""), message.get("more_body", False)
        if state["mode"] == "stream":
            data = scrub(state["tail"] + body)
            state["tail"] = b""
            if more and (held := partial_tail(data)):
                data, state["tail"] = data[:-held], data[-held:]
            if data or not more:
                await send({**message, "body": data})
            return
        state["buffered"].append(body)
        if more:
            return
        data = b"".join(state["buffered"])
        start = state["start"]
        if any(p in data for p in prefixes):
            data = scrub(data)
            start = {**start, "headers": [(k, str(len(data)).encode() if k.lower() == b"content-length" else v)
                                          for k, v in start["headers"]]}
        await send(start)
        await send({"type": "http.response.body", "body": data, "more_body": False})

    return wrapped


def check_guard_is_outermost(app) -> None:
    """Refuse to start unless RequestGuard is the server's outermost middleware: langgraph-api puts an http app's
    middleware outside its own (langgraph_api/server.py) — unless its config says otherwise (middleware_order
    "auth_first", a mount_prefix wrapper app): then some routes would bypass the allow-list."""
    first = (getattr(app, "user_middleware", None) or [None])[0]
    if getattr(first, "cls", None) is not RequestGuard:
        raise RuntimeError("agent.api.guard.RequestGuard is not the API server's outermost middleware (a langgraph.json "
                           "http.middleware_order or mount_prefix change?); refusing to start with routes it would not guard")
    table = route_table(app)
    denied = [f"{m} {p}" for m, p in table if route_access("GET" if m == "*" else m, p) is None]
    log.info("step=api_routes answered=%d denied=%d", len(table) - len(denied), len(denied))

