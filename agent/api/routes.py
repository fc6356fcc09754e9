"""Atelier's own HTTP routes on the API server: GET /assets/{sha256}, GET /creations[/{id}], DELETE
/creations/{id}, POST /creations (a picture), GET /creations/{id}/export and GET /atelier/health (documented in
/openapi.json from the docstrings below). Each answers only for the caller (request_user).
"""
from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from agent.api.auth import ANONYMOUS, USER_HEADER, api_keys
from agent.settings import get_settings
from memory.validation import CREATION_ID, InvalidInput, parse_bounded_int, shown, validate_idea, validate_user_id

log = logging.getLogger("atelier.api")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_OFFSET = 1_000_000_000  # /creations?offset=: far beyond any real history, far inside SQLite's 64-bit range


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
    from memory.store import get_store

    store = get_store()
    found = store.asset_file(sha, user)
    if found is None:  # unknown, or someone else's: the same answer, so ids cannot be probed
        raise HTTPException(404, "no such asset")
    rel_path, mime = found
    path = (store.data_dir / rel_path).resolve()
    if not path.is_relative_to(store.data_dir) or not path.is_file():
        raise HTTPException(404, "asset file is missing")
    filename = f"{sha[:16]}{path.suffix}"
    return FileResponse(path, media_type=mime, filename=filename if request.query_params.get("download") else None,
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
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
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



ROUTES = [
    Route("/assets/{sha256}", get_asset, methods=["GET", "HEAD"]),
    Route("/creations", list_creations, methods=["GET"]),
    Route("/creations", upload_creation, methods=["POST"]),
    Route("/creations/{creation_id}", get_creation, methods=["GET"]),
    Route("/creations/{creation_id}", delete_creation, methods=["DELETE"]),
    Route("/creations/{creation_id}/export", export_creation_file, methods=["GET"]),
    Route("/atelier/health", health, methods=["GET"]),
]
