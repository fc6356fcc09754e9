"""Find the image / 3D model / video in an app's output, by schema and by content.

Every string in the output (a few levels deep) is a candidate. A candidate is a binary carrier when it is
a data: URI, an http(s) URL, a resource id (`<type>_<encoding>_<sha256>/resources`, `.../executions/<32 hex>`,
the older `data_blob_<hex>`, or any short token in a field the schema marks as binary or `is_resource`), or
inline base64. A resource id whose hash is that of empty content is the app's way of saying the generation
failed: it is reported as such (and not fetched). Carriers are decoded or fetched (through a callback
given by the client, which enforces the size cap and the deadline) and identified by their magic bytes;
the schema and field name only say what a field is expected to hold, so that a field that should be an
image but holds HTML is reported as such rather than passed on.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import BadResponse, OpenfabricError, TooLarge
from .schema_mapping import _alternatives, _Recursive, is_binary_schema, resolve

REF_RE = re.compile(r"^(data_blob_[0-9A-Fa-f]{8,}|[A-Za-z0-9][A-Za-z0-9_\-]{2,200}(\.[A-Za-z0-9]{1,8})?)$")
BLOB_RE = re.compile(r"^data_blob_[0-9A-Fa-f]{8,}$")
# `<type>_<encoding>_<sha256>` + `/resources` (REST) or `/executions/<32 hex>` (socket.io), as the apps answer
RESOURCE_ID_RE = re.compile(r"^(?P<type>[A-Za-z0-9]+)_(?P<encoding>[A-Za-z0-9]+)_(?P<hash>[0-9A-Fa-f]{64})"
                            r"(?P<tail>/resources|/executions/[0-9A-Fa-f]{32})?$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # e3b0c442...: the id of a resource with no content
ENCODING_KINDS = {"webgl": "model", "glb": "model", "gltf": "model", "obj": "model", "mesh": "model", "model": "model",
                  "png": "image", "jpeg": "image", "jpg": "image", "image": "image", "webp": "image",
                  "mp4": "video", "video": "video", "webm": "video"}
DATA_URI_RE = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),", re.S)
B64_RE = re.compile(r"^[A-Za-z0-9+/_\-\s]+={0,2}\s*$")
MAX_WALK_DEPTH = 6
MAX_CANDIDATES = 64

# (bytes, content-type or "") for a reference or URL
Fetcher = Callable[[str, str], Awaitable[tuple[bytes, str]]]

KIND_WORDS = {
    "image": {"image", "img", "picture", "photo", "png", "jpeg", "jpg", "webp", "result", "output"},
    "model": {"model", "object", "mesh", "glb", "gltf", "obj", "ply", "3d", "generated", "shape"},
    "video": {"video", "preview", "mp4", "animation", "turntable", "webm"},
}


def sniff(data: bytes) -> tuple[str, str, str] | None:
    """(kind, mime, format) from magic bytes, or None."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp", "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "image/gif", "gif"
    if head[:4] == b"glTF" and len(data) >= 12:
        version, length = struct.unpack("<II", data[4:12])
        if version in (1, 2):
            return "model", "model/gltf-binary", "glb"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "video", "video/quicktime" if brand == b"qt  " else "video/mp4", "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video", "video/webm", "webm"
    if head.startswith((b"ply\n", b"ply\r\n")):
        return "model", "application/ply", "ply"
    stripped = data[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{") and b'"asset"' in data[:1 << 20]:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("asset"), dict) and "version" in doc["asset"]:
            return "model", "model/gltf+json", "gltf"
    if _looks_like_obj(data):
        return "model", "model/obj", "obj"
    return None


def _looks_like_obj(data: bytes) -> bool:
    try:
        text = data[:65536].decode("ascii")
    except UnicodeDecodeError:
        return False
    keywords = ("v ", "vn ", "vt ", "f ", "o ", "g ", "s ", "#", "mtllib ", "usemtl ", "l ", "vp ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 4:
        return False
    if sum(1 for line in lines if line.startswith(keywords)) < 0.9 * len(lines):
        return False
    return sum(1 for line in lines if line.startswith("v ")) >= 3 and any(line.startswith("f ") for line in lines)


def describe_content(data: bytes, ctype: str = "") -> str:
    """What an answer looks like, in our words (content type, size, a rough kind), never its bytes: an app's
    answer may be anything, and reasons and warnings are shown to users and stored with creations."""
    shown = "".join(c for c in ctype.split(";")[0].strip()[:60] if c.isalnum() or c in "/.+-_") or "none"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not data:
        looks = "empty"
    elif head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        looks = "looks like HTML"
    elif head.startswith((b"<?xml", b"<")):
        looks = "looks like XML"
    elif head.startswith((b"{", b"[")):
        looks = "looks like JSON"
    else:
        try:
            data[:4096].decode("utf-8")
            looks = "text"
        except UnicodeDecodeError:
            looks = "binary"
    return f"content type {shown}, {len(data)} bytes, {looks}"


def safe_name(path: str, limit: int = 60) -> str:
    """A field path of the app's output as we show it: the names are the app's, so only the characters of an
    identifier and of a path (letters, digits, _ . [ ]) are kept, any other as '?', and the length is capped."""
    if path == "<root>":
        return path
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_.[]") else "?" for c in path[:limit])
    return cleaned + ("…" if len(path) > limit else "")


@dataclass(frozen=True)
class AssetLimits:
    """The largest asset of each kind accepted, and the most pixels an image may have (checked before decoding)."""
    image_bytes: int = 20 * 1024 * 1024
    model_bytes: int = 100 * 1024 * 1024
    video_bytes: int = 100 * 1024 * 1024
    image_pixels: int = 40_000_000

    @classmethod
    def from_settings(cls, settings) -> AssetLimits:
        return cls(settings.max_image_bytes, settings.max_model_bytes, settings.max_video_bytes, settings.max_image_pixels)

    def cap(self, kind: str) -> int:
        return {"image": self.image_bytes, "model": self.model_bytes, "video": self.video_bytes}[kind]


IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}  # sniffed format -> Pillow's name


def verify_asset(kind: str, fmt: str, data: bytes, limits: AssetLimits) -> str | None:
    """Why bytes that look like a `fmt` (by their magic) are not accepted as one, or None when they are: over the
    size cap of their kind, bytes after the file's own end, or not decodable (images by Pillow within the pixel
    limit, models by trimesh)."""
    cap = limits.cap(kind)
    if len(data) > cap:
        return f"{len(data)} bytes, over the {cap}-byte cap for {kind}s (ATELIER_OPENFABRIC_MAX_{kind.upper()}_BYTES)"
    if kind == "image":
        return _verify_image(fmt, data, limits.image_pixels)
    if kind == "model":
        return _verify_model(fmt, data)
    return None


def _verify_image(fmt: str, data: bytes, max_pixels: int) -> str | None:
    import io
    import warnings

    from PIL import Image

    if fmt not in IMAGE_FORMATS:
        return f"a {fmt.upper()} image; only PNG, JPEG and WebP are accepted"
    end = {"png": _png_end, "jpeg": _jpeg_end, "webp": _webp_end}[fmt](data)
    if end is None:
        return f"not a well-formed {fmt.upper()} (its structure does not parse)"
    if end != len(data):
        return f"{len(data) - end} bytes after the end of the {fmt.upper()} image" if end < len(data) else f"a truncated {fmt.upper()}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[IMAGE_FORMATS[fmt]]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return f"{width}x{height} pixels, over the {max_pixels}-pixel limit (ATELIER_OPENFABRIC_MAX_IMAGE_PIXELS)"
                image.load()
    except Exception as exc:  # Pillow's errors for broken data are many (OSError, SyntaxError, ValueError ...)
        return f"does not decode as {fmt.upper()} ({type(exc).__name__})"
    return None


def _png_end(data: bytes) -> int | None:
    """Offset just after the IEND chunk, walking the chunks; None when the structure is broken."""
    offset = 8
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        offset += 12 + length
        if offset > len(data):
            return None
        if kind == b"IEND":
            return offset
    return None


def _jpeg_end(data: bytes) -> int | None:
    """Offset just after the EOI marker: segments by their lengths, entropy-coded data scanned for markers."""
    offset, size = 2, len(data)
    while offset + 2 <= size:
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xD9:
            return offset + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            offset += 2
            continue
        if offset + 4 > size:
            return None
        (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
        if length < 2:
            return None
        offset += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker that is not a stuffed 00 or a restart
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= size:
                    return None
                following = data[offset + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    offset += 1 if following == 0xFF else 2
                    continue
                break
    return None


def _webp_end(data: bytes) -> int | None:
    if len(data) < 12:
        return None
    (riff_size,) = struct.unpack("<I", data[4:8])
    return 8 + riff_size + (riff_size & 1)


def _verify_model(fmt: str, data: bytes) -> str | None:
    import io

    if fmt == "glb":
        problem = _glb_structure(data)
        if problem:
            return problem
    if fmt == "gltf":
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "not a well-formed glTF (its JSON does not parse)"
        uris = [b.get("uri") for key in ("buffers", "images") for b in doc.get(key) or [] if isinstance(b, dict)]
        if any(isinstance(uri, str) and not uri.startswith("data:") for uri in uris):
            return "a glTF that refers to outside files (only embedded data: URIs are accepted)"
    try:
        import trimesh

        trimesh.load(io.BytesIO(data), file_type=fmt, force="scene")
    except Exception as exc:  # trimesh raises many kinds for broken files
        return f"does not load as {fmt.upper()} ({type(exc).__name__})"
    return None


def _glb_structure(data: bytes) -> str | None:
    """GLB: 12-byte header (magic, version 2, total length = the file's size), then chunks whose lengths add up,
    the first a JSON chunk (the glTF 2.0 binary container)."""
    if len(data) < 20:
        return "a GLB too short for a header and a chunk"
    _, version, length = struct.unpack("<4sII", data[:12])
    if version != 2:
        return f"a GLB of version {version}; only version 2 is accepted"
    if length != len(data):
        return f"a GLB whose header says {length} bytes but holds {len(data)}"
    offset, first = 12, True
    while offset < length:
        if offset + 8 > length:
            return "a GLB with a broken chunk header"
        chunk_length, chunk_type = struct.unpack("<I4s", data[offset:offset + 8])
        if first and chunk_type != b"JSON":
            return "a GLB whose first chunk is not JSON"
        first = False
        offset += 8 + chunk_length
        if offset > length:
            return "a GLB chunk that runs past the end of the file"
    return None


@dataclass
class Candidate:
    path: str
    value: str
    schema: dict
    hint: str | None  # kind the schema/name suggests, or None


@dataclass
class FoundAsset:
    kind: str
    mime: str
    format: str
    data: bytes
    field: str
    source: str  # inline-base64 | data-uri | resource | url


@dataclass
class Extraction:
    assets: list[FoundAsset] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fields_seen: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # why a field holds no content (an empty resource: a failed generation)


def resource_id(value: str) -> re.Match | None:
    """The parts of a resource id (`type`, `encoding`, `hash`, `tail`), or None when `value` is not one."""
    return RESOURCE_ID_RE.match(value)


def _is_resource_ref(value: str) -> bool:
    return bool(BLOB_RE.match(value) or RESOURCE_ID_RE.match(value))


def _hint(name: str, schema: dict) -> str | None:
    media = str(schema.get("contentMediaType", "")).lower()
    for prefix, kind in (("image/", "image"), ("model/", "model"), ("video/", "video")):
        if media.startswith(prefix):
            return kind
    words = set(re.findall(r"[a-z0-9]+", f"{name} {schema.get('title', '')} {schema.get('description', '')}".lower().replace("_", " ")))
    name_words = set(re.findall(r"[a-z0-9]+", name.lower().replace("_", " ")))
    for kind in ("video", "model", "image"):  # video/model words are more specific than "output"/"result"
        if name_words & KIND_WORDS[kind] - {"result", "output", "generated"}:
            return kind
    encoding = ENCODING_KINDS.get(str(schema.get("resource_encoding", "")).lower())  # marshmallow resource fields
    if encoding:
        return encoding
    for kind in ("video", "model", "image"):
        if words & KIND_WORDS[kind] - {"result", "output", "generated", "object"}:
            return kind
    return None


def walk(output: Any, schema: Any, root: Any = None) -> list[Candidate]:
    root = schema if root is None else root
    found: list[Candidate] = []

    def sub_schema(node: Any, key: Any) -> dict:
        if not isinstance(node, dict):
            return {}
        try:
            if isinstance(key, int):
                items = node.get("items")
                return _alternatives(resolve(items, root), root) if isinstance(items, dict) else {}
            props = node.get("properties")
            if isinstance(props, dict) and key in props:
                return _alternatives(resolve(props[key], root), root)
            extra = node.get("additionalProperties")
            return _alternatives(resolve(extra, root), root) if isinstance(extra, dict) else {}
        except (_Recursive, Exception):
            return {}

    def visit(value: Any, node: dict, path: str, name: str, depth: int) -> None:
        if len(found) >= MAX_CANDIDATES or depth > MAX_WALK_DEPTH:
            return
        if isinstance(value, str):
            found.append(Candidate(safe_name(path or "<root>"), value, node, _hint(name, node)))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(item, sub_schema(node, key), f"{path}.{key}" if path else str(key), str(key), depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value[:MAX_CANDIDATES]):
                visit(item, sub_schema(node, index), f"{path}[{index}]", name, depth + 1)

    try:
        top = _alternatives(resolve(schema, root), root) if isinstance(schema, dict) else {}
    except Exception:
        top = {}
    visit(output, top, "", "", 0)
    return found


LINK_WORDS = {"url", "uri", "link", "href", "result", "results", "output", "outputs", "file", "path", "download", "asset", "resource"}


def _link_field(cand: Candidate) -> bool:
    fmt = str(cand.schema.get("format", "")).lower()
    words = set(re.findall(r"[a-z0-9]+", cand.path.lower().replace("_", " ")))
    return fmt in ("uri", "url", "iri", "uri-reference") or bool(words & LINK_WORDS)


def _decode_base64(text: str, max_bytes: int, path: str) -> bytes | None:
    compact = re.sub(r"\s+", "", text)
    if len(compact) < 16 or not B64_RE.match(compact):
        return None
    if len(compact) * 3 // 4 > max_bytes:
        raise TooLarge(f"field '{path}' holds {len(compact) * 3 // 4} bytes of base64, over the {max_bytes}-byte cap")
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _inline_media(text: str, max_bytes: int, path: str) -> bool:
    data = _decode_base64(text, max_bytes, path)
    return data is not None and sniff(data) is not None


def _decode_data_uri(text: str, max_bytes: int, path: str) -> tuple[bytes, str]:
    match = DATA_URI_RE.match(text)
    if not match:
        raise BadResponse(f"field '{path}' holds a malformed data: URI")
    mime = match.group(1) or "text/plain"
    payload = text[match.end():]
    if ";base64" in match.group(2).lower():
        data = _decode_base64(payload, max_bytes, path) if payload else b""
        if data is None:
            raise BadResponse(f"field '{path}' holds a data: URI whose base64 does not decode")
        return data, mime
    from urllib.parse import unquote_to_bytes

    data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise TooLarge(f"field '{path}' holds {len(data)} bytes, over the {max_bytes}-byte cap")
    return data, mime


async def extract(output: Any, output_schema: Any, fetch: Fetcher, *, max_bytes: int, limits: AssetLimits | None = None) -> Extraction:
    """Decode or fetch every binary carrier in `output`, identify it by content and check it is what it looks like
    (verify_asset): a refused one is a problem, with its reason, and not an asset."""
    limits = limits or AssetLimits()
    result = Extraction()
    total = 0
    for cand in walk(output, output_schema if isinstance(output_schema, dict) else {}):
        value = cand.value.strip()
        result.fields_seen.append(cand.path)
        binary_field = is_binary_schema(cand.schema)
        data: bytes | None = None
        source = ""
        declared = ""
        if value.startswith("data:"):
            data, declared = _decode_data_uri(value, max_bytes, cand.path)
            source = "data-uri"
        elif value.lower().startswith(("http://", "https://")) and not any(c.isspace() for c in value):
            expected = binary_field or cand.hint is not None
            if not expected and not _link_field(cand):
                continue  # a link in a plain text field (a homepage, a licence) is not ours to follow
            try:
                data, declared = await fetch(value, cand.path)
            except OpenfabricError as exc:
                if expected:
                    raise
                result.problems.append(f"link in '{cand.path}' could not be fetched: {exc}")
                continue
            source = "url"
        elif _is_resource_ref(value) or (binary_field and REF_RE.match(value) and not _inline_media(value, max_bytes, cand.path)):
            # a resource id, or a short token in a binary field that is not itself a small image/model: fetch it
            parts = resource_id(value)
            if parts and parts["hash"].lower() == EMPTY_SHA256:
                why = f"field '{cand.path}' is an empty resource ({parts['type']}_{parts['encoding']}_{EMPTY_SHA256[:8]}…: the sha256 of empty content)"
                result.failed.append(why)
                result.problems.append(why)
                continue
            data, declared = await fetch(value, cand.path)
            source = "resource"
            if not data:
                why = f"field '{cand.path}': its resource has no content"
                result.failed.append(why)
                result.problems.append(why)
                continue
            if parts and hashlib.sha256(data).hexdigest() != parts["hash"].lower():
                result.problems.append(f"field '{cand.path}': its resource does not hash to the sha256 in its id")
        else:
            data = _decode_base64(value, max_bytes, cand.path)
            source = "inline-base64"
            if data is None:
                if binary_field:
                    result.problems.append(f"field '{cand.path}' should hold binary data but holds {len(value)} characters of text")
                continue
        total += len(data)
        if total > max_bytes:
            raise TooLarge(f"output holds more than the {max_bytes}-byte cap in total")
        sniffed = sniff(data)
        if sniffed is None:
            if binary_field or cand.hint or source in ("resource", "url", "data-uri"):
                what = f"{cand.hint or 'binary'} field" if (binary_field or cand.hint) else "field"
                result.problems.append(f"{what} '{cand.path}' ({source}) is not a known image/model/video format: {describe_content(data, declared)}")
            continue
        kind, mime, fmt = sniffed
        refused = verify_asset(kind, fmt, data, limits)
        if refused:
            result.problems.append(f"field '{cand.path}' ({source}) was refused as {fmt.upper()}: {refused}")
            continue
        if cand.hint and cand.hint != kind and source != "inline-base64":
            # the content wins, but say so
            result.problems.append(f"field '{cand.path}' was expected to hold a {cand.hint} but holds {fmt}")
        result.assets.append(FoundAsset(kind, mime, fmt, data, cand.path, source))
    return result
