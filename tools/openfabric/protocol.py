"""The Openfabric app protocol as an app speaks it: the app kinds and answer shapes, their manifests and schemas,
resource ids, the ray (an execution's status), and decoding what a client sends. The local node
(agent/openfabric_node.py) serves it, and the test fakes (tests/support/openfabric_fakes.py) build their apps from it;
the client side is tools/openfabric/client.py. Nothing here imports a backend or a server."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TEXT_TO_IMAGE = "text-to-image"
IMAGE_TO_3D = "image-to-3d"
APP_KINDS = {TEXT_TO_IMAGE: "image", IMAGE_TO_3D: "model"}
NODE_VERSION = "1.0.0"
MARSHMALLOW = "marshmallow"
SIMPLE = "simple"
SHAPES = (MARSHMALLOW, SIMPLE)
DEFAULT_SHAPE = MARSHMALLOW  # mirrors the real apps
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def default_manifest(app_kind: str, backend_name: str) -> dict:
    what = "Text to image" if app_kind == TEXT_TO_IMAGE else "Image to 3D model"
    return {
        "name": f"atelier-local-{app_kind}",
        "version": NODE_VERSION,
        "description": f"{what}, served by Atelier's local Openfabric node with the '{backend_name}' backend.",
        "organization": "atelier (local)",
        "sdk": "atelier-openfabric-node",
        "overview": f"Local stand-in for an Openfabric {app_kind} app; same protocol (manifest, schema, execution, resource, socket.io /app).",
        "input": "InputClass",
        "output": "OutputClass",
    }


def default_schemas(app_kind: str) -> tuple[dict, dict]:
    resource_note = "a resource reference (data_blob_<hex>); fetch the bytes with GET /resource?reid=<ref>"
    if app_kind == TEXT_TO_IMAGE:
        input_schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "InputClass",
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "Text prompt describing the image."},
                "negative_prompt": {"type": "string", "maxLength": 2000, "description": "What the image should avoid."},
                "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "description": "Random seed for reproducible images."},
                "width": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512, "description": "Image width in pixels."},
                "height": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512, "description": "Image height in pixels."},
                "steps": {"type": "integer", "minimum": 1, "maximum": 200, "description": "Inference steps (ignored by fast backends)."},
            },
            "required": ["prompt"],
            "additionalProperties": False,
        }
        output_schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "OutputClass",
            "type": "object",
            "properties": {
                "result": {"type": "string", "format": "binary", "contentMediaType": "image/png", "description": f"Generated image: {resource_note}."},
            },
            "required": ["result"],
        }
    elif app_kind == IMAGE_TO_3D:
        input_schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "InputClass",
            "type": "object",
            "properties": {
                "input_image": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png",
                                "description": "Source image, base64 encoded (a data: URI is accepted too)."},
                "prompt": {"type": "string", "maxLength": 4000, "description": "Optional text describing the object."},
                "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295, "description": "Random seed."},
            },
            "required": ["input_image"],
            "additionalProperties": False,
        }
        output_schema = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "OutputClass",
            "type": "object",
            "properties": {
                "generated_object": {"type": "string", "format": "binary", "contentMediaType": "model/gltf-binary", "description": f"3D model (GLB): {resource_note}."},
                "video_object": {"type": "string", "format": "binary", "contentMediaType": "video/mp4", "description": f"Optional turntable preview video: {resource_note}."},
            },
            "required": ["generated_object"],
        }
    else:
        raise ValueError(f"unknown app kind {app_kind!r} (use {TEXT_TO_IMAGE} or {IMAGE_TO_3D})")
    return input_schema, output_schema


def marshmallow_resource_field(name: str, encoding: str) -> dict:
    """A resource field as marshmallow-jsonschema writes it (encoding: blob or WebGL)."""
    return {"title": name, "type": ["string", "null"], "is_resource": True, "resource_type": "data", "resource_encoding": encoding}


def marshmallow_document(cls: str, properties: dict) -> dict:
    """A schema as marshmallow-jsonschema writes it: everything under definitions, a top-level $ref."""
    return {"$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {cls: {"type": "object", "properties": properties, "additionalProperties": False}},
            "$ref": f"#/definitions/{cls}"}


def marshmallow_schemas(app_kind: str) -> tuple[dict, dict]:
    """Schemas as openfabric-pysdk publishes them (marshmallow-jsonschema): a top-level $ref into definitions."""
    resource, document = marshmallow_resource_field, marshmallow_document
    if app_kind == TEXT_TO_IMAGE:
        return (document("InputClass", {"prompt": {"title": "prompt", "type": "string"},
                                        "attachments": {"title": "attachments", "type": "array", "items": {"title": "attachments", "type": "string"}}}),
                document("OutputClass", {"result": resource("result", "blob")}))
    if app_kind == IMAGE_TO_3D:
        return (document("InputClass", {"input_image": resource("input_image", "blob")}),
                document("OutputClass", {"generated_object": resource("generated_object", "WebGL"), "video_object": resource("video_object", "blob")}))
    raise ValueError(f"unknown app kind {app_kind!r} (use {TEXT_TO_IMAGE} or {IMAGE_TO_3D})")


def sha_in(ref: str) -> str | None:
    """The sha256 in a resource id (`data_blob_<sha>`, `<type>_<encoding>_<sha>/resources`, `.../executions/<qid>`)."""
    head = ref.split("/", 1)[0]
    digest = head.rsplit("_", 1)[-1].lower()
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


class ResourceStore:
    """Bounded in-memory store for generated bytes, kept by sha256 and found by any resource id that carries it."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024, max_items: int = 256):
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, mime: str) -> str:
        ref = "data_blob_" + hashlib.sha256(data).hexdigest()
        with self._lock:
            if ref in self._items:
                self._items.move_to_end(ref)
                return ref
            self._items[ref] = (data, mime)
            self._size += len(data)
            while self._items and (self._size > self.max_bytes or len(self._items) > self.max_items) and len(self._items) > 1:
                _, (old, _) = self._items.popitem(last=False)
                self._size -= len(old)
        return ref

    def get(self, ref: str) -> tuple[bytes, str] | None:
        digest = sha_in(ref)
        if digest == EMPTY_SHA256:
            return b"", "application/octet-stream"
        with self._lock:
            return self._items.get(f"data_blob_{digest}") if digest else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Ray:
    sid: str
    uid: str | None
    rid: str | None
    qid: str
    status: str = "QUEUED"
    percent: float = 0.0
    finished: bool = False
    created_at: str = ""
    updated_at: str = ""

    def __post_init__(self) -> None:
        self.created_at = self.updated_at = now_iso()
        self.messages: list[dict] = []

    def update(self, *, status: str | None = None, percent: float | None = None, message: str | None = None, kind: str = "INFO") -> None:
        if status:
            self.status = status
        if percent is not None:
            self.percent = max(0.0, min(100.0, percent))
        if message:
            self.messages.append({"type": kind, "content": message, "created_at": now_iso()})
            self.messages = self.messages[-20:]
        self.updated_at = now_iso()

    def dump(self) -> dict:
        return {"sid": self.sid, "uid": self.uid, "rid": self.rid, "qid": self.qid,
                "bars": {"default": {"percent": round(self.percent, 1), "remaining": "NaN"}},
                "messages": list(self.messages), "status": self.status, "finished": self.finished,
                "created_at": self.created_at, "updated_at": self.updated_at}


class InputRejected(Exception):
    pass


def decode_execute_payload(data: Any) -> dict:
    """The `execute` payload: zlib-compressed JSON bytes (as Proxy sends), or plain JSON text / object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        data = raw.decode("utf-8")
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise InputRejected("execute payload is not a JSON object")
    return data


def decode_image_field(value: Any) -> tuple[bytes, str]:
    if not isinstance(value, str):
        raise InputRejected("image field is not a string")
    mime = ""
    text = value.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        mime = head[5:].split(";")[0]
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputRejected(f"image field is not base64: {exc}") from None
    if data.startswith(b"\x89PNG"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return data, mime or "application/octet-stream"
