"""The LangGraph API server's Atelier parts: who the caller is (auth), asset/creation routes, and `serve()`.

langgraph.json points the server here:
    "auth": {"path": "agent.webapp:auth"}           who is calling, and which threads they may touch
    "http": {"app": "agent.webapp:app", ...}       GET /assets/{sha256}, GET /creations[/{id}], DELETE /creations/{id},
                                                   POST /creations (a picture), GET /creations/{id}/export,
                                                   GET /atelier/health (documented in /openapi.json), and /mcp:
                                                   Atelier's MCP server (agent/mcp_server.py; "disable_mcp" turns
                                                   langgraph-api's own off)
and RequestGuard, in front of every route, answers only the routes in ALLOWED_ROUTES (deny by default: the
runtime's /internal/*, /deploy, /metrics ... get 404; see docs/api-hardening.md).

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
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from agent.settings import AgentSettings, SettingsError, checked_settings, get_settings
from memory.validation import CREATION_ID, InvalidInput, parse_bounded_int, shown, validate_idea, validate_user_id

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
    """token -> user from ATELIER_API_KEYS ("alice:tok1,bob:tok2"); empty = no tokens required. A value of any
    other form never gets here: the settings refuse it (agent/settings.py), so auth cannot silently turn off."""
    return get_settings().api_key_map


def admins() -> frozenset[str]:
    """Users (ATELIER_API_ADMINS="alice,ops") who may create, change or delete assistants — only when tokens prove
    who they are (ATELIER_API_KEYS); a header identity is a claim anyone on the network can make."""
    if not api_keys():
        return frozenset()
    return get_settings().api_admin_set


def max_body_bytes() -> int:
    return get_settings().api_max_body_bytes


def body_limit(path: str) -> int:
    """ATELIER_API_MAX_BODY_BYTES, except where a picture of the user's own is sent: POST /creations (the bytes) and
    /mcp (base64 inside JSON: 4/3 of them), which take up to ATELIER_UPLOAD_MAX_BYTES."""
    if path in ("/creations", "/mcp"):
        from memory.settings import get_settings as memory_settings

        picture = memory_settings().upload_max_bytes
        return max(max_body_bytes(), (picture * 4 // 3 if path == "/mcp" else picture) + 64 * 1024)
    return max_body_bytes()


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
    from agent.inmem_queue import QueueFull, admit

    try:
        admit(user, value.get("thread_id"))  # a user's pile of waiting runs stops here, before it is stored
    except QueueFull as exc:
        raise Auth.exceptions.HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": "5"}) from None
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
    thread only by its id, which they got when they created it — and may not act on many threads at once: a bulk
    cancel (POST /runs/cancel {"status": ...}) names no thread, so with no identity it would reach every user's
    runs."""
    identity = _identity(ctx)
    if identity is None:
        if ctx.action in ("update", "delete") and not value.get("thread_id"):
            raise Auth.exceptions.HTTPException(status_code=403, detail="an operation on many threads at once needs an identity "
                                                "(X-Atelier-User or a token); name the thread and runs instead")
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


_CREATION_ID = CREATION_ID  # the one creation-id rule (memory/validation.py)


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


def export_creation_file(request: Request):
    """Download one of the caller's 3D models in another format.
    ---
    summary: Export a creation's 3D model
    tags: [Atelier history]
    description: >
      The creation's GLB as glb, obj, stl, 3mf or ply (tools/export.py; usdz is refused with the reason). STL and 3MF
      are Z-up, on the bed, scaled so the largest dimension is `size_mm` millimetres (default 100) and checked
      watertight (header X-Atelier-Watertight). The same as `atelier export ID --format F --size-mm N`.
    parameters:
      - {name: creation_id, in: path, required: true, schema: {type: string}}
      - {name: format, in: query, required: false, schema: {type: string, enum: [glb, obj, stl, 3mf, ply, usdz], default: glb}}
      - {name: size_mm, in: query, required: false, schema: {type: number, minimum: 1, maximum: 10000}}
      - {name: user_id, in: query, required: false, schema: {type: string}}
    responses:
      "200": {description: "the file, as an attachment named <id>.<format>"}
      "404": {description: "no such creation for this user"}
      "422": {description: "an unknown format, a size out of range, or a creation without a 3D model (the message says which)"}
    """
    from memory.store import get_store
    from tools.export import ExportError, export_creation

    user, creation_id = request_user(request), _creation_id(request)
    try:
        result = export_creation(get_store(), creation_id, user, request.query_params.get("format") or "glb",
                                 request.query_params.get("size_mm"))
    except LookupError:
        raise HTTPException(404, "no such creation") from None
    except ExportError as exc:
        raise HTTPException(422, str(exc)) from None
    headers = {"Content-Disposition": f'attachment; filename="{creation_id}{result.extension}"', "Cache-Control": "private, no-store"}
    if "watertight" in result.facts:
        headers["X-Atelier-Watertight"] = str(result.facts["watertight"]).lower()
    return Response(result.data, media_type=result.mime, headers=headers)


async def upload_creation(request: Request):
    """Bring in a picture of your own.
    ---
    summary: Upload a picture as a creation
    tags: [Atelier history]
    description: >
      The body is the picture's bytes (PNG, JPEG or WebP, told by its content; at most ATELIER_UPLOAD_MAX_BYTES and
      ATELIER_UPLOAD_MAX_PIXELS). It is turned upright by its EXIF orientation, stripped of its metadata and kept as a
      new creation of the caller's (its image's backend: `upload`), which becomes what they are working on: a run with
      "make it 3D" in a new thread (or with `"image": {"creation_id": ID}` in its input) models it. The same as
      `atelier create --image PATH --no-3d`.
    parameters:
      - {name: filename, in: query, required: false, schema: {type: string}}
      - {name: description, in: query, required: false, schema: {type: string}, description: "what the picture shows"}
      - {name: user_id, in: query, required: false, schema: {type: string}}
    responses:
      "201": {description: "the new creation, as GET /creations/{id} answers"}
      "413": {description: "the body is larger than ATELIER_UPLOAD_MAX_BYTES"}
      "422": {description: "not a PNG, JPEG or WebP picture, too many pixels, or unreadable (the message says which)"}
    """
    import asyncio

    from memory.settings import get_settings as memory_settings
    from memory.store import get_store
    from memory.upload import store_upload

    user, limit = request_user(request), memory_settings().upload_max_bytes
    if (request.headers.get("content-type") or "").startswith(("multipart/", "application/x-www-form-urlencoded")):
        raise HTTPException(415, "send the picture's bytes as the body (Content-Type: image/jpeg), not a form")
    body = bytearray()
    async for chunk in request.stream():  # a chunked body has no Content-Length for RequestGuard to check
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the picture is larger than {limit} bytes (ATELIER_UPLOAD_MAX_BYTES)")
    try:
        description = request.query_params.get("description")
        if description is not None:
            description = validate_idea(description, get_settings().max_idea_chars, field="description")
        view = await asyncio.to_thread(store_upload, get_store(), user, bytes(body), filename=request.query_params.get("filename"),
                                       description=description)
    except InvalidInput as exc:
        raise HTTPException(422, str(exc)) from None
    return JSONResponse(_creation_json(view), status_code=201)


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
    from memory.recall import MAX_QUERY_CHARS, recall
    from memory.store import get_store

    try:
        limit = parse_bounded_int(request.query_params.get("limit"), "limit", 20, 1, 100)
        offset = parse_bounded_int(request.query_params.get("offset"), "offset", 0, 0, MAX_OFFSET)
        since = time_bound(request.query_params.get("since"), "since")
        until = time_bound(request.query_params.get("until"), "until")
        q = " ".join((request.query_params.get("q") or "").split())
        if len(q) > MAX_QUERY_CHARS:
            raise InvalidInput("q", f"is longer than {MAX_QUERY_CHARS} characters")
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
    """What this server runs on, for an operator: kinds only, never a path, URL or user (with ATELIER_API_KEYS
    it needs a token like every route but /ok)."""
    from memory.settings import get_settings as memory_settings
    from models.settings import get_settings as model_settings

    settings = memory_settings()
    return JSONResponse({"ok": True,
                         "database": "postgres" if (settings.database_url or "").startswith("postgres") else "sqlite",
                         "chroma": "server" if settings.chroma_url else "embedded", "llm": "server" if model_settings().llm_url else "in-process",
                         "auth": "token" if api_keys() else "header-or-config"})


# -- which routes the server answers: deny by default ----------------------------------------------------------
# Every (method, path) the server answers must match a row here; anything else — the in-memory runtime's
# /internal/* and /deploy, /metrics, /info, crons, the store, a2a, ui, and whatever a langgraph-api upgrade adds —
# is answered 404 by RequestGuard before it reaches a route. "open": anyone, and the answer reveals nothing (the
# health check of load balancers and compose). "caller": with ATELIER_API_KEYS only a valid bearer token passes
# the guard; then the runtime's auth (agent.webapp:auth) scopes the route to the caller. `python -m agent.webapp
# --routes` prints the server's whole route table with each route's verdict.
ALLOWED_ROUTES: tuple[tuple[str, str, str], ...] = (
    # Atelier's own routes (this module)
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
    its own, before auth and routing; lifespan() checks that at start-up and refuses to start otherwise):

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
        raise RuntimeError("agent.webapp.RequestGuard is not the API server's outermost middleware (a langgraph.json "
                           "http.middleware_order or mount_prefix change?); refusing to start with routes it would not guard")
    table = route_table(app)
    denied = [f"{m} {p}" for m, p in table if route_access("GET" if m == "*" else m, p) is None]
    log.info("step=api_routes answered=%d denied=%d", len(table) - len(denied), len(denied))


@contextlib.asynccontextmanager
async def lifespan(app):
    """Server start-up (merged into the LangGraph server's lifespan): check that the route allow-list guards every
    route, make the in-memory runtime save what it tells clients (agent/inmem_durability.py) and schedule runs
    fairly (agent/inmem_queue.py), and open the store, which removes asset temp files a killed process left and
    marks creations that a dead process left in_progress as interrupted (docs/durability.md)."""
    import asyncio

    check_guard_is_outermost(app)
    settings = checked_settings()
    if settings.runtime_edition == "inmem" and settings.api_flush_on_commit:
        from agent.inmem_durability import install

        install()
    if settings.runtime_edition == "inmem":
        from agent.inmem_queue import install as schedule_runs

        schedule_runs()  # fair across users, capped per user and thread, started at once (not at a 0.5 s poll)
    try:
        from memory.store import get_store

        await asyncio.to_thread(get_store)
    except Exception as exc:  # the server still starts; the store opens (and recovers) on first use
        log.warning("step=startup_recover status=failed reason=%s", exc)
    async with mcp_http.running():  # Atelier's MCP server at /mcp (agent/mcp_server.py)
        yield


# Atelier's own MCP server (streamable HTTP) at /mcp, in place of langgraph-api's generic one (langgraph.json
# http.disable_mcp): the caller is who request_user() says, as for /creations.
from agent.mcp_server import McpHttp  # noqa: E402

mcp_http = McpHttp(request_user)


app = Starlette(lifespan=lifespan, middleware=[Middleware(RequestGuard)], routes=[
    Route("/assets/{sha256}", get_asset, methods=["GET", "HEAD"]),
    Route("/creations", list_creations, methods=["GET"]),
    Route("/creations", upload_creation, methods=["POST"]),
    Route("/creations/{creation_id}", get_creation, methods=["GET"]),
    Route("/creations/{creation_id}", delete_creation, methods=["DELETE"]),
    Route("/creations/{creation_id}/export", export_creation_file, methods=["GET"]),
    Route("/atelier/health", health, methods=["GET"]),
    Route("/mcp", mcp_http, methods=["GET", "POST", "DELETE"]),
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
    """Run the LangGraph API server (in-memory runtime) in this process until it is stopped. A setting wrong in
    form (ATELIER_API_KEYS, ATELIER_API_ADMINS ...) stops it here with SettingsError, one line naming it."""
    checked_settings()
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


def served_app(data_dir: str | None = None, config_path: Path | None = None):
    """The Starlette app serve() would run — built by langgraph_api.server in serve()'s environment — without
    listening: for auditing its route table (`python -m agent.webapp --routes`). Changes this process's cwd and
    environment as serve() does."""
    import importlib

    import uvicorn

    built: dict[str, Any] = {}

    def build_only(target, **_kwargs):
        module, _, name = target.partition(":")
        built["app"] = getattr(importlib.import_module(module), name)

    serve_for_real, uvicorn.run = uvicorn.run, build_only
    try:
        serve(data_dir=data_dir, config_path=config_path)
    finally:
        uvicorn.run = serve_for_real
    return built["app"]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.webapp", description="Run the Atelier LangGraph API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2024)
    parser.add_argument("--jobs", type=int, help="runs executed at once (default ATELIER_API_JOBS or 8)")
    parser.add_argument("--data-dir", help="data dir (default ATELIER_DATA_DIR or ./data)")
    parser.add_argument("--routes", action="store_true",
                        help="print the server's whole route table as JSON (method, path, access: open | caller | denied) and exit")
    args = parser.parse_args(argv)
    try:
        if args.routes:
            table = route_table(served_app(data_dir=args.data_dir))
            print(json.dumps([{"method": m, "path": p, "access": route_access("GET" if m == "*" else m, p) or "denied"}
                              for m, p in table], indent=1))
            return 0
        return serve(args.host, args.port, jobs=args.jobs, data_dir=args.data_dir)
    except SettingsError as exc:
        print(f"atelier serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
