"""HTTP routes the studio adds to Chainlit's server: a creation's image / model, and thumbnails.

Every request is checked against the signed-in user (Chainlit's session cookie): a creation that belongs
to someone else answers 404, exactly like one that does not exist.
"""
from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response

log = logging.getLogger("atelier.ui")

THUMB_PX = 192


async def _identifier(request: Request) -> str:
    from chainlit.auth import get_current_user, require_login
    from chainlit.auth.cookie import get_token_from_cookies

    from .auth import local_user_name

    if not require_login():
        return local_user_name()
    token = get_token_from_cookies(request.cookies)
    if not token:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
    if not token:
        raise HTTPException(status_code=401, detail="sign in first")
    try:
        user = await get_current_user(token)
    except HTTPException:
        raise HTTPException(status_code=401, detail="sign in first") from None
    if user is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return user.identifier


def _find(creation_id: str, user: str, kind: str):
    from memory.store import get_store

    if not creation_id.isalnum() or len(creation_id) > 64:
        return None
    view = get_store().get(creation_id, user_id=user)
    return view.asset(kind) if view else None


router = APIRouter()


@router.get("/atelier/asset/{creation_id}/{kind}")
async def creation_asset(creation_id: str, kind: str, request: Request, user: str = Depends(_identifier)):
    from tools.kinds import KINDS

    if kind not in KINDS:  # image, model and the kinds tools added (tools/kinds.py)
        raise HTTPException(status_code=404, detail="no such asset")
    asset = await asyncio.to_thread(_find, creation_id, user, kind)
    if asset is None or not Path(asset.path).is_file():
        raise HTTPException(status_code=404, detail="no such creation")
    etag = f'"{asset.sha256[:32]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304)
    ext = Path(asset.path).suffix
    download = request.query_params.get("download")
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="atelier-{creation_id}{ext}"'
    return FileResponse(asset.path, media_type=asset.mime, headers=headers)


def _thumbnail(path: str, sha: str, cache_dir: Path) -> Path:
    from PIL import Image

    target = cache_dir / f"{sha[:40]}-{THUMB_PX}.jpg"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=82, optimize=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    return target


@router.get("/atelier/thumb/{creation_id}")
async def creation_thumb(creation_id: str, request: Request, user: str = Depends(_identifier)):
    from memory.settings import get_settings

    asset = await asyncio.to_thread(_find, creation_id, user, "image")
    if asset is None or not Path(asset.path).is_file():
        raise HTTPException(status_code=404, detail="no such creation")
    etag = f'"t{asset.sha256[:32]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304)
    cache = Path(get_settings().data_dir) / "ui_cache" / "thumbs"
    try:
        path = await asyncio.to_thread(_thumbnail, asset.path, asset.sha256, cache)
    except Exception as exc:  # an unreadable picture: show the original rather than nothing
        log.warning("step=thumbnail creation=%s status=failed reason=%s", creation_id, exc)
        return FileResponse(asset.path, media_type=asset.mime)
    return FileResponse(path, media_type="image/jpeg", headers={"ETag": etag, "Cache-Control": "private, max-age=86400"})


def install(app) -> None:
    """Add the routes ahead of Chainlit's catch-all page route (which would otherwise answer them)."""
    if getattr(app.state, "atelier_routes", False):
        return
    routes = app.router.routes
    before = len(routes)
    app.include_router(router)
    added = routes[before:]
    del routes[before:]
    routes[0:0] = added  # first match wins: ours come before Chainlit's "/{full_path:path}"
    app.state.atelier_routes = True
