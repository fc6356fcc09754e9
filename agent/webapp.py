"""The LangGraph API server's Atelier parts: who the caller is (auth), asset/creation routes, and `serve()`.

langgraph.json points the server here:
    "auth": {"path": "agent.webapp:auth"}           who is calling, and which threads they may touch
    "http": {"app": "agent.webapp:app", ...}       GET /assets/{sha256}, GET /creations[/{id}], DELETE /creations/{id},
                                                   GET /atelier/health (documented in /openapi.json)

Identity (see docs/deployment.md):
  * ATELIER_API_KEYS="alice:token1,bob:token2" set: every request needs `Authorization: Bearer <token>`; the
    token's user is the identity, and a run's user_id is forced to it.
  * otherwise the `X-Atelier-User` header names the user (a trusted network: localhost, a proxy that sets it);
  * with neither, a run's user comes from config.configurable.user_id or metadata.user_id ("local" if absent),
    as the issue asks; reads are then not scoped (single-user local use, like `langgraph dev`).
A thread belongs to the user who created it (metadata.user_id). A run on it for another user is refused, and
recall / image_to_3d / the asset routes only ever see the run user's creations.

`serve()` runs the in-memory LangGraph runtime (what `langgraph dev --no-browser --no-reload` runs) with its
working directory under the data dir, because langgraph-runtime-inmem keeps threads, runs and checkpoints in
./.langgraph_api relative to the cwd: under <data dir>/api they survive a restart and never land in the repo.
"""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from langgraph_sdk import Auth
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from agent.settings import AgentSettings, get_settings
from memory.validation import InvalidInput, parse_bounded_int, shown, validate_idea, validate_user_id

log = logging.getLogger("atelier.api")

ROOT = Path(__file__).resolve().parent.parent
USER_HEADER = "x-atelier-user"
ANONYMOUS = "~anonymous"  # no identity was presented (never a real user: the tilde is refused below)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Request bodies are JSON of one message (ATELIER_MAX_IDEA_CHARS, 4000 by default: at most ~24 kB even with
# \uXXXX escapes) or a resume; anything far larger is refused before it is read (413).
DEFAULT_MAX_BODY_BYTES = AgentSettings.model_fields["api_max_body_bytes"].default
MAX_OFFSET = 1_000_000_000  # /creations?offset=: far beyond any real history, far inside SQLite's 64-bit range


# -- identity ---------------------------------------------------------------------------------------------
def api_keys() -> dict[str, str]:
    """token -> user from ATELIER_API_KEYS ("alice:tok1,bob:tok2"); empty = no tokens required."""
    keys: dict[str, str] = {}
    for item in get_settings().api_keys.split(","):
        user, sep, token = item.strip().partition(":")
        if sep and user.strip() and token.strip():
            try:
                keys[token.strip()] = validate_user_id(user)  # the same rule as every other user id
            except InvalidInput as exc:
                log.warning("step=api_keys status=skipped reason=%s", exc)
    return keys


def admins() -> frozenset[str]:
    """Users (ATELIER_API_ADMINS="alice,ops") who may create, change or delete assistants — only when tokens prove
    who they are (ATELIER_API_KEYS); a header identity is a claim anyone on the network can make."""
    if not api_keys():
        return frozenset()
    return get_settings().api_admin_set


def max_body_bytes() -> int:
    return get_settings().api_max_body_bytes


def _valid_user(value: Any, status: int = 400) -> str:
    try:
        return validate_user_id(value)
    except InvalidInput as exc:
        raise Auth.exceptions.HTTPException(status_code=status, detail=str(exc)) from None


def identify(headers: dict, authorization: str | None) -> dict:
    keys = api_keys()
    if keys:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Auth.exceptions.HTTPException(status_code=401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        for known, user in keys.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return {"identity": user, "permissions": ["atelier:token"]}
        raise Auth.exceptions.HTTPException(status_code=401, detail="unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
    raw = headers.get(USER_HEADER.encode()) or headers.get(USER_HEADER)
    if raw:
        # (the server maps only 401/403 raised while authenticating; anything else would be a 500. A duplicated
        # or undecodable header never gets here: RequestGuard answers 400 first.)
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            raise Auth.exceptions.HTTPException(status_code=401, detail="X-Atelier-User is not valid UTF-8") from None
        user = _valid_user(text, status=401)
        return {"identity": user, "permissions": ["atelier:header"]}
    return {"identity": ANONYMOUS, "permissions": ["atelier:anonymous"], "is_authenticated": False}


def _identity(ctx: Auth.types.AuthContext) -> str | None:
    identity = ctx.user.identity
    return None if identity == ANONYMOUS else identity


def run_user(identity: str | None, claimed: Any) -> str:
    """The user a run acts for: the caller's identity; a different claim is refused."""
    if claimed is not None and claimed != "":
        claimed = _valid_user(claimed)
    if identity is None:
        return claimed or "local"
    if claimed and claimed != identity:
        raise Auth.exceptions.HTTPException(status_code=403, detail=f"user_id {claimed!r} does not match the caller")
    return identity


auth = Auth()


@auth.authenticate
async def authenticate(headers: dict, authorization: str | None = None) -> dict:
    return identify(headers, authorization)


@auth.on.threads.create
async def on_thread_create(ctx: Auth.types.AuthContext, value: dict) -> dict:
    metadata = value.get("metadata")
    if metadata is None:
        metadata = value["metadata"] = {}
    user = run_user(_identity(ctx), metadata.get("user_id"))
    metadata["user_id"] = user
    return {"user_id": user}


@auth.on.threads.create_run
async def on_run_create(ctx: Auth.types.AuthContext, value: dict) -> dict:
    kwargs = value.get("kwargs")
    if kwargs is None:
        kwargs = value["kwargs"] = {}
    config = kwargs.get("config")
    if config is None:
        config = kwargs["config"] = {}
    configurable = config.setdefault("configurable", {})
    metadata = value.get("metadata")
    if metadata is None:
        metadata = value["metadata"] = {}
    claims = [configurable.get("user_id"), metadata.get("user_id"), (config.get("metadata") or {}).get("user_id")]
    claims = [c for c in claims if c not in (None, "")]
    if len(set(map(str, claims))) > 1:
        raise Auth.exceptions.HTTPException(status_code=400, detail="conflicting user_id in config and metadata")
    user = run_user(_identity(ctx), claims[0] if claims else None)
    configurable["user_id"] = user  # what the graph's Configuration reads: recall and tools are scoped by it
    check_run_input(kwargs, configurable)
    metadata["user_id"] = user  # a thread created by this run belongs to this user
    return {"user_id": user}  # and an existing thread must already belong to them


def check_run_input(kwargs: dict, configurable: dict) -> None:
    """Refuse a run before it is queued (422) when its settings or its message break the rules every entry point
    shares (agent.configuration / memory.validation): nothing is made or stored for it. The graph checks again
    on its own input, for callers that do not come through here."""
    from agent.configuration import Configuration

    try:
        Configuration.from_runnable_config({"configurable": configurable})
        messages = (kwargs.get("input") or {}).get("messages") if isinstance(kwargs.get("input"), dict) else None
        for message in messages if isinstance(messages, list) else [messages] if messages else []:
            content = message.get("content") if isinstance(message, dict) else message if isinstance(message, str) else None
            if isinstance(content, list):
                content = " ".join(b.get("text", "") for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
            role = message.get("role") or message.get("type") if isinstance(message, dict) else "user"
            if isinstance(content, str) and role in ("user", "human"):
                validate_idea(content or "-", get_settings().max_idea_chars, field="the message")
    except ValueError as exc:  # InvalidInput included: the message names the field and the rule
        raise Auth.exceptions.HTTPException(status_code=422, detail=str(exc)) from None


@auth.on.threads.search
async def on_thread_search(ctx: Auth.types.AuthContext, value: dict) -> dict:
    """A listing only ever shows one user's threads: the caller's, or (anonymous) the user_id searched for."""
    identity = _identity(ctx)
    if identity is not None:
        return {"user_id": identity}
    return {"user_id": _valid_user((value.get("metadata") or {}).get("user_id") or "local")}


@auth.on.threads
async def on_threads(ctx: Auth.types.AuthContext, value: dict) -> dict | None:
    """read / update / delete / history: only the caller's threads. Anonymous callers (open local mode) reach a
    thread only by its id, which they got when they created it."""
    identity = _identity(ctx)
    if identity is None:
        return None
    if isinstance(value.get("metadata"), dict) and value["metadata"].get("user_id") not in (None, identity):
        raise Auth.exceptions.HTTPException(status_code=403, detail="a thread's user_id cannot be changed")
    return {"user_id": identity}


@auth.on.store
async def on_store(ctx: Auth.types.AuthContext, value: dict) -> None:
    """The LangGraph key-value store (unused by the graph): with an identity, only the caller's namespace."""
    identity = _identity(ctx)
    namespace = tuple(value.get("namespace") or ())
    if identity is not None and (not namespace or namespace[0] != identity):
        raise Auth.exceptions.HTTPException(status_code=403, detail="store namespaces start with your user id")


@auth.on.assistants
async def on_assistants(ctx: Auth.types.AuthContext, value: dict) -> None:
    """Assistants are graph configurations shared by every user: anyone may read and search them, only an admin
    (ATELIER_API_ADMINS, with tokens) may create, change or delete one — otherwise one user's PATCH would change
    everybody's runs, and a DELETE would break them."""
    if ctx.action in ("read", "search"):
        return None
    if _identity(ctx) in admins():
        return None
    raise Auth.exceptions.HTTPException(status_code=403, detail=f"assistants are shared; {ctx.action} is for admins (ATELIER_API_ADMINS)")


@auth.on.crons
async def on_crons(ctx: Auth.types.AuthContext, value: dict) -> None:
    raise Auth.exceptions.HTTPException(status_code=403, detail="scheduled runs are not offered by Atelier")


# -- HTTP routes ------------------------------------------------------------------------------------------
def request_user(request: Request) -> str:
    """The identity from auth (custom-route auth is on), else ?user_id= (open local mode), else "local"."""
    identity = None
    try:
        identity = request.user.identity if request.user and request.user.is_authenticated else None
    except (AssertionError, AttributeError):  # no auth middleware (the routes mounted on their own)
        identity = None
    if identity and identity != ANONYMOUS:
        claimed = request.query_params.get("user_id")
        if claimed and claimed != identity:
            raise HTTPException(403, "user_id does not match the caller")
        return identity
    claimed = request.query_params.get("user_id") or request.headers.get(USER_HEADER) or "local"
    try:
        return validate_user_id(claimed)
    except InvalidInput as exc:
        raise HTTPException(400, str(exc)) from None


def asset_url(sha256: str) -> str:
    return f"/assets/{sha256}"


def _creation_json(view) -> dict:
    data = view.to_dict()
    for asset in data["assets"]:
        asset.pop("path", None)  # server-local paths mean nothing to a client
        asset["url"] = asset_url(asset["sha256"])
    return data


def get_asset(request: Request):
    sha = request.path_params["sha256"].lower()
    if not _SHA256.match(sha):
        raise HTTPException(400, "an asset id is a sha256 hex digest")
    user = request_user(request)
    from sqlalchemy import select

    from memory.models import Asset, CreationRecord
    from memory.store import get_store

    store = get_store()
    with store.sessions() as session:
        row = session.execute(
            select(Asset.path, Asset.mime).join(CreationRecord, Asset.creation_id == CreationRecord.id)
            .where(Asset.sha256 == sha, CreationRecord.user_id == user).limit(1)
        ).first()
    if row is None:  # unknown, or someone else's: the same answer, so ids cannot be probed
        raise HTTPException(404, "no such asset")
    path = (store.data_dir / row.path).resolve()
    if not path.is_relative_to(store.data_dir) or not path.is_file():
        raise HTTPException(404, "asset file is missing")
    filename = f"{sha[:16]}{path.suffix}"
    return FileResponse(path, media_type=row.mime, filename=filename if request.query_params.get("download") else None,
                        headers={"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{sha}"'})


_CREATION_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


def _summary(view) -> dict:
    return {"id": view.id, "created_at": view.created_at, "status": view.status, "original_prompt": view.original_prompt,
            "url": f"/creations/{view.id}"}


def _creation_id(request: Request) -> str:
    creation_id = request.path_params["creation_id"]
    if not _CREATION_ID.match(creation_id):  # never a real id: the same 404 as an unknown one
        raise HTTPException(404, "no such creation")
    return creation_id


def get_creation(request: Request):
    """One of the caller's creations, with its lineage both ways.
    ---
    summary: One creation with its lineage
    tags: [Atelier history]
    description: >
      The caller's creation (prompts, status, assets with their /assets URLs) and its lineage: `lineage.parent`,
      the creation it remixes, and `lineage.remixes`, the creations that remix it (oldest first), each
      `{id, created_at, status, original_prompt, url}`. Only the caller's own creations are ever shown.
    parameters:
      - {name: creation_id, in: path, required: true, schema: {type: string}}
      - {name: user_id, in: query, required: false, schema: {type: string},
         description: "whose history, when no token or X-Atelier-User names the caller (open local mode)"}
    responses:
      "200": {description: "the creation: the /creations item fields plus lineage {parent, remixes}"}
      "404": {description: "no such creation for this user (another user's id is answered the same way)"}
    """
    from memory.store import get_store

    store, user = get_store(), request_user(request)
    view = store.get(_creation_id(request), user_id=user)
    if view is None:
        raise HTTPException(404, "no such creation")
    parent = store.get(view.parent_id, user_id=user) if view.parent_id else None
    remixes = [c for c in store.children(view.id) if c.user_id == user]
    return JSONResponse({**_creation_json(view), "lineage": {"parent": _summary(parent) if parent else None,
                                                             "remixes": [_summary(c) for c in remixes]}})


def delete_creation(request: Request):
    """Forget one of the caller's creations.
    ---
    summary: Forget a creation
    tags: [Atelier history]
    description: >
      Removes the creation's rows, its vector (recall no longer finds it) and its asset files that no other
      creation uses (files are shared by content hash). Its remixes stay, without a parent. The same as
      `atelier forget ID --user U`.
    parameters:
      - {name: creation_id, in: path, required: true, schema: {type: string}}
      - {name: user_id, in: query, required: false, schema: {type: string}}
    responses:
      "200": {description: "{id, user_id, files_removed, files_kept, remixes_orphaned}"}
      "404": {description: "no such creation for this user: nothing changed"}
    """
    from memory.store import get_store

    user = request_user(request)
    result = get_store().forget(_creation_id(request), user)
    if result is None:
        raise HTTPException(404, "no such creation")
    return JSONResponse(result)


def time_bound(value: str | None, field: str) -> datetime | None:
    """?since= / ?until=: an ISO date or date-time (a date alone is that whole day, a time without an offset is
    UTC) or a time phrase recall understands ("yesterday", "last week", "3 days ago"): since = its start,
    until = its end."""
    from memory.timeparse import split_time

    text = (value or "").strip()
    if not text:
        return None
    if len(text) > 100:
        raise InvalidInput(field, "is longer than 100 characters")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is not None:
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        whole_day = re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is not None
        return parsed + timedelta(days=1) if whole_day and field == "until" else parsed
    rest, window = split_time(text)
    if window is None or rest:
        raise InvalidInput(field, f"must be an ISO date (2026-11-30), a date-time (2026-11-30T14:00Z) or a time phrase "
                                  f"such as 'yesterday' or 'last week', not {shown(text)}")
    return window.start if field == "since" else window.end


def list_creations(request: Request):
    """The caller's creations: newest first, or by meaning with ?q=, within ?since= / ?until=.
    ---
    summary: Search and page through the caller's creations
    tags: [Atelier history]
    description: >
      Without `q`, the caller's creations newest first. With `q`, recall_similar's search (memory/recall.py):
      the words by meaning (Chroma), a time phrase in them ("the castle from last week") as a window, filler
      alone ("what I made") by recency; each item then carries a `score`, and only the best 100 are ranked.
      `since` / `until` narrow either to a time window.
    parameters:
      - {name: q, in: query, required: false, schema: {type: string, maxLength: 300}}
      - {name: since, in: query, required: false, schema: {type: string},
         description: "ISO date / date-time (UTC when no offset) or a phrase: yesterday, last week, 3 days ago"}
      - {name: until, in: query, required: false, schema: {type: string},
         description: "exclusive end; a date alone includes that day; a phrase ends where it ends"}
      - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 100, default: 20}}
      - {name: offset, in: query, required: false, schema: {type: integer, minimum: 0, default: 0}}
      - {name: user_id, in: query, required: false, schema: {type: string}}
    responses:
      "200": {description: "{user_id, q, mode (recent | semantic | recency), since, until, limit, offset, creations: [...]}"}
      "422": {description: "a parameter breaks its rule (the message names it)"}
    """
    from memory.recall import recall
    from memory.store import get_store

    try:
        limit = parse_bounded_int(request.query_params.get("limit"), "limit", 20, 1, 100)
        offset = parse_bounded_int(request.query_params.get("offset"), "offset", 0, 0, MAX_OFFSET)
        since = time_bound(request.query_params.get("since"), "since")
        until = time_bound(request.query_params.get("until"), "until")
        q = " ".join((request.query_params.get("q") or "").split())
        if len(q) > 300:
            raise InvalidInput("q", "is longer than 300 characters")
        if since and until and since >= until:
            raise InvalidInput("since", "must be before until")
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    user = request_user(request)
    store = get_store()
    started = time.perf_counter()
    if q:
        # recall ranks at most 100; a window from since/until is applied to what it ranked
        found = recall(store, q, user, limit=100 if (since or until) else min(100, offset + limit))
        views = [v for v in found.creations if (since is None or v.created >= since) and (until is None or v.created < until)]
        views, mode = views[offset:offset + limit], found.mode
    else:
        views, mode = store.list(user, limit=limit, offset=offset, since=since, until=until), "recent"
    log.info("step=list_creations user=%s mode=%s results=%d seconds=%.3f", user, mode, len(views), time.perf_counter() - started)
    return JSONResponse({"user_id": user, "q": q, "mode": mode, "since": since.isoformat() if since else None,
                         "until": until.isoformat() if until else None, "limit": limit, "offset": offset,
                         "creations": [_creation_json(v) for v in views]})


def health(request: Request):
    from memory.settings import get_settings as memory_settings
    from models.settings import get_settings as model_settings

    settings = memory_settings()
    return JSONResponse({"ok": True, "data_dir": str(Path(settings.data_dir).resolve()),
                         "database": "postgres" if (settings.database_url or "").startswith("postgres") else "sqlite",
                         "chroma": "server" if settings.chroma_url else "embedded", "llm": "server" if model_settings().llm_url else "in-process",
                         "auth": "token" if api_keys() else "header-or-config"})


class RequestGuard:
    """ASGI middleware in front of every route (langgraph.json's http app: the server applies it before auth):

      * a body larger than ATELIER_API_MAX_BODY_BYTES is refused by its Content-Length before a byte is read
        (413); a chunked one is cut off at the same size by the runtime (HTTP_MAX_REQUEST_BODY_BYTES, set by
        serve()). A 20 MB message never reaches the JSON parser, the graph or the store.
      * X-Atelier-User sent twice, or not valid UTF-8, is refused (400): a proxy's header and a client's must not
        silently pick a winner, and two different undecodable names must not become the same user.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            problem = self.check(scope.get("headers") or [])
            if problem is not None:
                status, detail = problem
                response = JSONResponse({"detail": detail}, status_code=status)
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    def check(headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        users = [v for k, v in headers if k.lower() == USER_HEADER.encode()]
        if len(users) > 1:
            return 400, "X-Atelier-User was sent more than once"
        if users:
            try:
                users[0].decode("utf-8")
            except UnicodeDecodeError:
                return 400, "X-Atelier-User is not valid UTF-8"
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        limit = max_body_bytes()
        if lengths:
            try:
                length = int(lengths[-1])
            except ValueError:
                return 400, "Content-Length is not a number"
            if length > limit:
                return 413, f"request body is {length} bytes; the limit is {limit} (ATELIER_API_MAX_BODY_BYTES)"
        return None


@contextlib.asynccontextmanager
async def lifespan(_app):
    """Server start-up (merged into the LangGraph server's lifespan): make the in-memory runtime save what it tells
    clients (agent/inmem_durability.py), and open the store, which removes asset temp files a killed process left
    and marks creations that a dead process left in_progress as interrupted (docs/durability.md)."""
    import asyncio

    settings = get_settings()
    if settings.runtime_edition == "inmem" and settings.api_flush_on_commit:
        from agent.inmem_durability import install

        install()
    if settings.runtime_edition == "inmem":
        from agent.inmem_queue import install as start_runs_when_created

        start_runs_when_created()  # a new run starts at once, not at the runtime's next 0.5 s poll
    from tools.backends import warm_up

    warm_up()  # the image and mesh pipelines load in background threads; a creation meanwhile waits for that load
    try:
        from memory.store import get_store

        await asyncio.to_thread(get_store)
    except Exception as exc:  # the server still starts; the store opens (and recovers) on first use
        log.warning("step=startup_recover status=failed reason=%s", exc)
    yield


app = Starlette(lifespan=lifespan, middleware=[Middleware(RequestGuard)], routes=[
    Route("/assets/{sha256}", get_asset, methods=["GET", "HEAD"]),
    Route("/creations", list_creations, methods=["GET"]),
    Route("/creations/{creation_id}", get_creation, methods=["GET"]),
    Route("/creations/{creation_id}", delete_creation, methods=["DELETE"]),
    Route("/atelier/health", health, methods=["GET"]),
])


# -- the server -------------------------------------------------------------------------------------------
def load_config(path: Path | None = None) -> dict:
    return json.loads((path or ROOT / "langgraph.json").read_text())


def prepare_environment(data_dir: str | os.PathLike | None = None) -> Path:
    """Pin everything that is relative to the cwd before the server changes into its state dir."""
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)  # pydantic-settings would not find .env after the chdir
    from memory.settings import get_settings as memory_settings
    from models.settings import get_settings as model_settings, reset_settings

    if data_dir is not None:
        os.environ["ATELIER_DATA_DIR"] = str(data_dir)
        reset_settings()
    resolved = Path(memory_settings().data_dir).resolve()
    os.environ["ATELIER_DATA_DIR"] = str(resolved)
    models = model_settings()
    for name, value in (("ATELIER_LLM_PATH", models.llm_path), ("ATELIER_EMBEDDING_MODEL_PATH", models.embedding_model_path),
                        ("ATELIER_WHISPER_MODEL_PATH", models.whisper_model_path)):
        if value:  # the graph reads them again in the state dir the server changes into
            os.environ[name] = str(Path(value).resolve())
    reset_settings()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return resolved


def state_dir(data_dir: Path) -> Path:
    """Where the in-memory runtime keeps its .langgraph_api/ (threads, runs, checkpoints)."""
    return Path(get_settings().api_state_dir or data_dir / "api").resolve()


def serve(host: str = "127.0.0.1", port: int = 2024, *, jobs: int | None = None, data_dir: str | None = None,
          config_path: Path | None = None, log_level: str | None = None) -> int:
    """Run the LangGraph API server (in-memory runtime) in this process until it is stopped."""
    resolved = prepare_environment(data_dir)
    config = load_config(config_path)
    where = state_dir(resolved)
    where.mkdir(parents=True, exist_ok=True)
    os.chdir(where)  # before langgraph_runtime_inmem is imported: it opens ./.langgraph_api at import time
    jobs = jobs or get_settings().api_jobs or 8
    print(f"Atelier API on http://{host}:{port} (data {resolved}, threads in {where / '.langgraph_api'}, {jobs} concurrent runs)",
          file=sys.stderr, flush=True)
    # The runtime's own body cap (langgraph_api.route.ApiRequest), read when langgraph_api.config is imported:
    # a chunked body with no Content-Length is cut off at the same size RequestGuard checks.
    os.environ.setdefault("HTTP_MAX_REQUEST_BODY_BYTES", str(max_body_bytes()))
    from langgraph_api.cli import run_server

    run_server(host, port, reload=False, graphs=config["graphs"], n_jobs_per_worker=jobs, open_browser=False,
               auth=config.get("auth"), http=config.get("http"), store=config.get("store"),
               checkpointer=config.get("checkpointer"), ui=config.get("ui"), webhooks=config.get("webhooks"),
               # Sync graph nodes run in worker threads; blocking checks (blockbuster) would only flag the
               # dev runtime, never the production image, so run like production.
               allow_blocking=True,
               server_level=(log_level or get_settings().api_log_level).upper())
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.webapp", description="Run the Atelier LangGraph API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2024)
    parser.add_argument("--jobs", type=int, help="runs executed at once (default ATELIER_API_JOBS or 8)")
    parser.add_argument("--data-dir", help="data dir (default ATELIER_DATA_DIR or ./data)")
    args = parser.parse_args(argv)
    return serve(args.host, args.port, jobs=args.jobs, data_dir=args.data_dir)


if __name__ == "__main__":
    sys.exit(main())
