"""Who is calling the API server, and what they may touch: identity (ATELIER_API_KEYS bearer tokens, the
X-Atelier-User header, or a run's claimed user_id), the request-size limits, and the langgraph_sdk Auth handlers
that langgraph.json names ("auth": {"path": "agent.api.auth:auth"}).

Identity (see docs/deployment.md):
  * ATELIER_API_KEYS="alice:token1,bob:token2" set: every request needs `Authorization: Bearer <token>`; the
    token's user is the identity, and a run's user_id is forced to it.
  * otherwise the `X-Atelier-User` header names the user (a trusted network: localhost, a proxy that sets it);
  * with neither, a run's user comes from config.configurable.user_id or metadata.user_id ("local" if absent),
    as the issue asks; reads are then not scoped (single-user local use, like `langgraph dev`).
A thread belongs to the user who created it (metadata.user_id). A run on it for another user is refused, and
recall / image_to_3d / the asset routes only ever see the run user's creations.
"""
from __future__ import annotations

import hmac
from typing import Any

from langgraph_sdk import Auth

from agent.settings import AgentSettings, get_settings
from memory.validation import InvalidInput, validate_idea, validate_user_id

USER_HEADER = "x-atelier-user"
ANONYMOUS = "~anonymous"  # no identity was presented (never a real user: the tilde is refused below)
# Request bodies are JSON of one message (ATELIER_MAX_IDEA_CHARS, 4000 by default: at most ~24 kB even with
# \uXXXX escapes) or a resume; anything far larger is refused before it is read (413).
DEFAULT_MAX_BODY_BYTES = AgentSettings.model_fields["api_max_body_bytes"].default


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

