"""A picture of the user's own, brought in (CLI `create --image`, MCP `make_3d`, the studio): validated, cleaned and
kept as a creation of its own whose image asset's backend (its source) is `upload`; from there the same image → 3D
step and the same memory (recall, history, forget) as a generated image.

Validation, before anything is stored:
  * at most ATELIER_UPLOAD_MAX_BYTES bytes (refused before decoding);
  * the type from the content, not the name: PNG, JPEG or WebP as Pillow reads the header;
  * at most ATELIER_UPLOAD_MAX_PIXELS pixels (read from the header: a decompression bomb is never decoded), at least
    MIN_SIDE px a side; the whole file must decode (a truncated one is refused);
  * EXIF orientation applied (ImageOps.exif_transpose), then re-encoded from the pixels alone: EXIF (GPS, camera),
    XMP, ICC and text chunks do not survive. JPEG stays JPEG (quality 95), PNG and WebP become PNG.
"""
from __future__ import annotations

import io
import logging
import os
import time
import warnings

from .settings import get_settings
from .types import GeneratedAsset
from .validation import InvalidInput, clean_text

log = logging.getLogger("atelier.memory")

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MIN_SIDE = 16
FIELD = "the picture"


def validate_picture(data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None) -> tuple[bytes, str, dict]:
    """(clean bytes, mime, facts) for an uploaded picture, or InvalidInput saying which rule it broke."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    settings = get_settings()
    max_bytes = max_bytes or settings.upload_max_bytes
    max_pixels = max_pixels or settings.upload_max_pixels
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidInput(FIELD, "is empty")
    if len(data) > max_bytes:
        raise InvalidInput(FIELD, f"is {len(data)} bytes; the limit is {max_bytes} (ATELIER_UPLOAD_MAX_BYTES)")
    too_many = f"has more pixels than the limit of {max_pixels} (ATELIER_UPLOAD_MAX_PIXELS)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own ceiling, from the header
        raise InvalidInput(FIELD, too_many) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput(FIELD, "is not a PNG, JPEG or WebP image") from None
    with opened:
        kind, (width, height) = opened.format, opened.size
        if width * height > max_pixels:
            raise InvalidInput(FIELD, f"is {width}x{height} pixels: it {too_many}")
        if min(width, height) < MIN_SIDE:
            raise InvalidInput(FIELD, f"is {width}x{height} pixels; each side must be at least {MIN_SIDE}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                opened.load()
                orientation = opened.getexif().get(0x0112, 1)
                upright = ImageOps.exif_transpose(opened)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
            raise InvalidInput(FIELD, f"could not be decoded ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    mode = "RGBA" if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info) else "RGB"
    clean = Image.frombytes(mode, upright.size, upright.convert(mode).tobytes())  # the pixels alone: no info, no EXIF
    out = io.BytesIO()
    if kind == "JPEG" and mode == "RGB":
        clean.save(out, "JPEG", quality=95, optimize=True)
        mime = "image/jpeg"
    else:
        clean.save(out, "PNG", optimize=True)
        mime = "image/png"
    facts = {"source": "upload", "original_format": kind.lower(), "original_bytes": len(data), "width": clean.width,
             "height": clean.height, "exif_orientation": orientation}
    return out.getvalue(), mime, facts


def clean_filename(name: str | None) -> str | None:
    """The base name a client gave, as plain text of at most 100 characters (never a path)."""
    if not name:
        return None
    base = clean_text(os.path.basename(str(name).replace("\\", "/"))).strip()[:100]
    return base or None


def store_upload(store, user_id: str, data: bytes, *, filename: str | None = None, description: str | None = None,
                 thread_id: str | None = None):
    """Validate the picture and keep it as a new creation of the user's (its image's backend: `upload`)."""
    started = time.perf_counter()
    clean, mime, facts = validate_picture(data)
    name = clean_filename(filename)
    if name:
        facts["filename"] = name
    words = clean_text(description or "").strip()[:2000]
    prompt = words or (f"uploaded picture {name}" if name else "uploaded picture")
    view = store.create(user_id=user_id, thread_id=thread_id, original_prompt=prompt, enhanced_prompt=prompt,
                        assets=[GeneratedAsset(kind="image", data=clean, mime=mime, backend="upload", metadata=facts)])
    from .session import session_context

    try:  # "make it 3D" in any of the user's threads now means this picture (memory/session.py)
        session_context(store).working_on(user_id, view.id, "uploaded")
    except Exception as exc:
        log.warning("step=upload_session creation=%s status=failed reason=%s", view.id, exc)
    log.info("step=upload creation=%s user=%s format=%s size=%dx%d bytes=%d seconds=%.3f", view.id, user_id, facts["original_format"],
             facts["width"], facts["height"], len(clean), time.perf_counter() - started)
    return view
