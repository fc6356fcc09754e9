"""Build an app's input object from what the tool has, reading the app's JSON Schema at run time.

Nothing about an app's field names is hard-coded. For every property of the input schema (nested objects
included, a few levels deep) we score how well it fits each thing the tool can offer - the prompt, the
negative prompt, a seed, a width/height/size, a step count, the source image - from its type, format,
name and description, then assign each value to its best field. Fields we have no value for get their
default (or const); required ones without a default take their first enum value, or null when the type
allows it; anything else required is reported by name. Values are fitted to the field (enum, minimum /
maximum, multipleOf, maxLength, string vs number vs array), and the result is validated with jsonschema
before it is sent. Only properties the schema declares are ever written.
"""
from __future__ import annotations

import base64
import copy
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema import validators

from .errors import BadSchema, SchemaUnsatisfiable

try:  # jsonschema >= 4.18 resolves $ref with the `referencing` library
    import referencing.exceptions as _referencing_exceptions

    _REFERENCING_ERRORS: tuple[type[BaseException], ...] = (_referencing_exceptions.Unresolvable,)
except ImportError:  # pragma: no cover
    _REFERENCING_ERRORS = ()

MAX_DEPTH = 4  # nesting of objects we look into
MAX_FIELDS = 500  # properties we score in total
MAX_REF_HOPS = 32


# ----------------------------------------------------------------------------- values the tool has


@dataclass
class ToolValues:
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    image: bytes | None = None
    image_mime: str = "image/png"

    def has(self, role: str) -> bool:
        if role == "size":
            return self.width is not None or self.height is not None
        return getattr(self, role, None) is not None


@dataclass
class MappedInput:
    body: Any
    assigned: dict[str, str] = field(default_factory=dict)  # field path -> role or "default"/"const"/"enum"/"null"/"random"
    schema_title: str = ""

    @property
    def fields(self) -> list[str]:
        return sorted(self.assigned)


# ----------------------------------------------------------------------------- $ref and composition


class _Recursive(Exception):
    def __init__(self, chain: list[str]):
        self.chain = chain
        super().__init__(" -> ".join(chain))


def _pointer(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        raise BadSchema(f"schema uses a non-local $ref {ref!r}, which is not followed")
    node = root
    fragment = ref[1:]
    if fragment in ("", "/"):
        return root
    for raw in fragment.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise BadSchema(f"schema $ref {ref!r} points at nothing")
    return node


def resolve(node: Any, root: Any, chain: tuple[str, ...] = ()) -> dict:
    """Follow $ref (recursion-guarded) and merge allOf; returns a plain dict schema."""
    if node is True or node is None:
        return {}
    if node is False:
        return {"not": {}}
    if not isinstance(node, dict):
        raise BadSchema(f"schema node is a {type(node).__name__}, not an object")
    hops = 0
    while "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str):
            raise BadSchema("schema $ref is not a string")
        if ref in chain:
            raise _Recursive(list(chain) + [ref])
        hops += 1
        if hops > MAX_REF_HOPS or len(chain) > MAX_REF_HOPS:
            raise BadSchema(f"schema $ref chain longer than {MAX_REF_HOPS} at {ref!r}")
        chain = chain + (ref,)
        target = _pointer(root, ref)
        if not isinstance(target, dict):
            target = {} if target is True else {"not": {}}
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings} if siblings else target
    if "allOf" in node and isinstance(node["allOf"], list):
        merged: dict = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            sub = resolve(part, root, chain)
            for key, value in sub.items():
                if key == "properties" and isinstance(value, dict):
                    merged.setdefault("properties", {})
                    merged["properties"] = {**value, **merged["properties"]}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = list(dict.fromkeys(list(merged.get("required", [])) + value))
                else:
                    merged.setdefault(key, value)
        node = merged
    return node


def _alternatives(node: dict, root: Any, chain: tuple[str, ...] = ()) -> dict:
    """For anyOf/oneOf pick the first branch that is not just null (for classification and filling)."""
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            nullable = False
            chosen = None
            for branch in branches:
                try:
                    sub = resolve(branch, root, chain)
                except _Recursive:
                    continue
                if _types(sub) == {"null"}:
                    nullable = True
                    continue
                if chosen is None:
                    chosen = sub
            base = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            merged = {**(chosen or {}), **base}
            if nullable:
                merged["__nullable__"] = True
            return merged
    return node


def _types(node: dict) -> set[str]:
    value = node.get("type")
    if isinstance(value, str):
        found = {value}
    elif isinstance(value, list):
        found = {v for v in value if isinstance(v, str)}
    else:
        found = set()
        if isinstance(node.get("properties"), dict):
            found.add("object")
        if "items" in node:
            found.add("array")
        for item in node.get("enum", []) if isinstance(node.get("enum"), list) else []:
            found.add({bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", list: "array", dict: "object"}.get(type(item), "string"))
        if "const" in node:
            found.add("any")
    if node.get("nullable") is True or node.get("__nullable__"):
        found.add("null")
    return found or {"any"}


# ----------------------------------------------------------------------------- fields


@dataclass
class Field:
    path: tuple[str, ...]
    schema: dict
    required: bool
    recursive: bool = False

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _object_node(schema: Any, root: Any) -> tuple[dict, bool]:
    """The object the app takes, and whether it takes a list of them (InputSchema(many=True))."""
    try:
        node = _alternatives(resolve(schema, root), root)
    except _Recursive as exc:
        raise BadSchema(f"input schema is a recursive $ref loop ({exc})") from None
    types = _types(node)
    if "array" in types and "object" not in types:
        try:
            items = _alternatives(resolve(node.get("items", {}), root), root)
        except _Recursive as exc:
            raise BadSchema(f"input schema items are a recursive $ref loop ({exc})") from None
        return items, True
    if "object" not in types and "any" not in types:
        raise BadSchema(f"input schema describes a {'/'.join(sorted(types))}, not an object")
    return node, False


def collect_fields(node: dict, root: Any, prefix: tuple[str, ...] = (), depth: int = 0, out: list[Field] | None = None) -> list[Field]:
    out = [] if out is None else out
    props = node.get("properties")
    if not isinstance(props, dict):
        return out
    required = set(node.get("required", []) if isinstance(node.get("required"), list) else [])
    for name, raw in props.items():
        if len(out) >= MAX_FIELDS:
            raise BadSchema(f"input schema has more than {MAX_FIELDS} properties")
        if not isinstance(name, str):
            continue
        try:
            sub = _alternatives(resolve(raw, root), root)
            fld = Field(prefix + (name,), sub, name in required)
        except _Recursive:
            fld = Field(prefix + (name,), {}, name in required, recursive=True)
        out.append(fld)
        if not fld.recursive and depth + 1 < MAX_DEPTH and "object" in _types(fld.schema):
            collect_fields(fld.schema, root, fld.path, depth + 1, out)
    return out


# ----------------------------------------------------------------------------- scoring

_WORD = re.compile(r"[a-z]+|\d+")

ROLE_NAMES: dict[str, set[str]] = {
    "prompt": {"prompt", "text", "positive_prompt", "input_text", "text_prompt", "caption", "description", "query", "instruction", "input", "message", "idea"},
    "negative_prompt": {"negative_prompt", "negative", "neg_prompt", "negativeprompt", "negative_text"},
    "seed": {"seed", "random_seed", "noise_seed", "rng_seed"},
    "width": {"width", "w", "image_width", "img_width"},
    "height": {"height", "h", "image_height", "img_height"},
    "size": {"size", "resolution", "image_size", "dimensions", "img_size", "output_size"},
    "steps": {"steps", "num_inference_steps", "num_steps", "inference_steps", "iterations", "sampling_steps"},
    "image": {"image", "input_image", "img", "picture", "photo", "source_image", "init_image", "image_data", "input", "source", "reference_image"},
}
ROLE_TOKENS: dict[str, set[str]] = {
    "prompt": {"prompt", "text", "caption"},
    "negative_prompt": {"negative", "neg"},
    "seed": {"seed"},
    "width": {"width"},
    "height": {"height"},
    "size": {"size", "resolution", "dimensions"},
    "steps": {"steps", "step", "iterations"},
    "image": {"image", "img", "picture", "photo"},
}
DESC_WORDS: dict[str, set[str]] = {
    "prompt": {"prompt", "text", "describe", "describing", "description", "caption"},
    "negative_prompt": {"negative", "avoid", "exclude", "unwanted"},
    "seed": {"seed", "random", "reproducible", "reproducibility"},
    "width": {"width", "wide"},
    "height": {"height", "tall"},
    "size": {"size", "resolution", "dimensions"},
    "steps": {"steps", "iterations", "denoising", "inference"},
    "image": {"image", "picture", "photo", "png", "jpeg", "jpg", "base64"},
}
BINARY_FORMATS = {"binary", "byte", "base64", "data-url", "data-uri", "dataurl", "resource", "blob", "file"}
NUMERIC = {"integer", "number"}


def _words(text: str) -> set[str]:
    return set(_WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower().replace("_", " ")))


def is_binary_schema(schema: dict) -> bool:
    fmt = str(schema.get("format", "")).lower()
    media = str(schema.get("contentMediaType", "")).lower()
    return (fmt in BINARY_FORMATS or bool(schema.get("contentEncoding")) or media.startswith(("image/", "model/", "video/", "application/octet"))
            or schema.get("is_resource") is True)  # marshmallow-jsonschema resource fields (openfabric_pysdk)


def score(fld: Field, role: str) -> float:
    if fld.recursive:
        return -math.inf
    schema = fld.schema
    types = _types(schema)
    item_types = _types(resolve_items(schema)) if "array" in types else set()
    stringy = bool(types & {"string", "any"}) or bool(item_types & {"string"})
    numeric = bool(types & (NUMERIC | {"any"}))
    binary = is_binary_schema(schema) or ("array" in types and is_binary_schema(resolve_items(schema)))
    name = fld.name.lower()
    name_words = _words(fld.name)
    desc_words = _words(" ".join(str(schema.get(k, "")) for k in ("title", "description")))
    negative = bool((name_words | desc_words) & {"negative", "neg"}) or name.startswith("neg")

    # type compatibility first
    if role in ("prompt", "negative_prompt"):
        if not stringy or binary:
            return -math.inf
        if role == "prompt" and negative:
            return -math.inf
        if role == "negative_prompt" and not negative:
            return -math.inf
    elif role in ("seed", "width", "height", "steps"):
        if not (numeric or (types & {"string"} and not binary)):
            return -math.inf
    elif role == "size":
        if not (stringy or numeric or "array" in types) or binary:
            return -math.inf
    elif role == "image":
        if not stringy:
            return -math.inf
        if "object" in types:
            return -math.inf

    total = 0.0
    if name in ROLE_NAMES[role] or name.replace("-", "_") in ROLE_NAMES[role]:
        total += 100
    elif name_words & ROLE_TOKENS[role]:
        total += 50
    if desc_words & DESC_WORDS[role]:
        total += 20
    if role == "image":
        total += 60 if binary else 0
        media = str(schema.get("contentMediaType", "")).lower()
        if media.startswith("image/"):
            total += 30
        if not binary and total < 100:
            total -= 40  # a plain text field is an image only when its name says so
    if role in ("prompt", "negative_prompt") and (types & {"string"}):
        total += 5
    if role in ("seed", "width", "height", "steps") and types & {"integer"}:
        total += 5
    if role in ("width", "height") and name_words & {"width", "height"} and len(name_words & {"width", "height"}) > 1:
        total -= 80  # "width_and_height": a size, not one of them
    if role == "size" and isinstance(schema.get("enum"), list) and any(_parse_size(v) for v in schema["enum"]):
        total += 40
    return total


def resolve_items(schema: dict) -> dict:
    items = schema.get("items")
    return items if isinstance(items, dict) else {}


def assign_roles(fields: list[Field], values: ToolValues, roles: Iterable[str]) -> dict[str, Field]:
    candidates: list[tuple[float, int, str, Field]] = []
    for index, fld in enumerate(fields):
        for role in roles:
            s = score(fld, role)
            if s >= 20:
                # prefer required fields and shallower ones on ties
                candidates.append((s + (3 if fld.required else 0) - len(fld.path), -index, role, fld))
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    taken_roles: dict[str, Field] = {}
    taken_fields: set[tuple[str, ...]] = set()
    for _score, _idx, role, fld in candidates:
        if role in taken_roles or fld.path in taken_fields:
            continue
        # never put a value inside a field that is itself the parent of an assigned field (or vice versa)
        if any(fld.path[: len(p)] == p or p[: len(fld.path)] == fld.path for p in taken_fields):
            continue
        taken_roles[role] = fld
        taken_fields.add(fld.path)
    return taken_roles


# ----------------------------------------------------------------------------- fitting values


def _parse_size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*[xX×*,]\s*(\d{1,5})\s*", value)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def _fit_number(value: float, schema: dict, integer: bool, label: str) -> float | int:
    enum = schema.get("enum")
    if isinstance(enum, list):
        numbers = [e for e in enum if isinstance(e, (int, float)) and not isinstance(e, bool)]
        if not numbers:
            raise SchemaUnsatisfiable(f"field '{label}' allows only {enum!r}; cannot express {value!r}", [label])
        return min(numbers, key=lambda e: (abs(e - value), e))
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    xlo = schema.get("exclusiveMinimum")
    xhi = schema.get("exclusiveMaximum")
    step = 1 if integer else 1e-9
    if isinstance(xlo, bool):  # draft-04 style
        xlo, lo = (lo if xlo else None), (None if xlo else lo)
    if isinstance(xhi, bool):
        xhi, hi = (hi if xhi else None), (None if xhi else hi)
    if isinstance(lo, (int, float)):
        value = max(value, lo)
    if isinstance(xlo, (int, float)) and value <= xlo:
        value = xlo + step
    if isinstance(hi, (int, float)):
        value = min(value, hi)
    if isinstance(xhi, (int, float)) and value >= xhi:
        value = xhi - step
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0:
        fitted = round(value / multiple) * multiple
        for candidate in (fitted, fitted + multiple, fitted - multiple):
            if _within(candidate, lo, hi, xlo, xhi):
                value = candidate
                break
    if integer:
        value = int(round(value))
        if isinstance(hi, (int, float)) and value > hi:
            value = int(math.floor(hi))
        if isinstance(lo, (int, float)) and value < lo:
            value = int(math.ceil(lo))
    return value


def _within(v: float, lo: Any, hi: Any, xlo: Any, xhi: Any) -> bool:
    return not ((isinstance(lo, (int, float)) and v < lo) or (isinstance(hi, (int, float)) and v > hi)
                or (isinstance(xlo, (int, float)) and not isinstance(xlo, bool) and v <= xlo)
                or (isinstance(xhi, (int, float)) and not isinstance(xhi, bool) and v >= xhi))


def _fit_text(text: str, schema: dict, label: str) -> str:
    enum = schema.get("enum")
    if isinstance(enum, list):
        for option in enum:
            if isinstance(option, str) and option.lower() == text.lower():
                return option
        raise SchemaUnsatisfiable(f"field '{label}' allows only {enum!r}", [label])
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and max_len >= 0 and len(text) > max_len:
        text = text[:max_len]
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(text) < min_len:
        raise SchemaUnsatisfiable(f"field '{label}' needs at least {min_len} characters, got {len(text)}", [label])
    return text


def _scalar_for(schema: dict, value: Any, label: str) -> Any:
    """Fit a number or string to a field, whatever its declared type."""
    types = _types(schema)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "integer" in types or ("any" in types and isinstance(value, int)):
            return _fit_number(value, schema, True, label)
        if "number" in types:
            return _fit_number(value, schema, False, label)
        if "string" in types:
            return _fit_text(str(value), schema, label)
        if "array" in types:
            return [_scalar_for(resolve_items(schema), value, label)]
    if isinstance(value, str):
        if types & {"string", "any"}:
            return _fit_text(value, schema, label)
        if "array" in types:
            return [_scalar_for(resolve_items(schema), value, label)]
    raise SchemaUnsatisfiable(f"field '{label}' has type {'/'.join(sorted(types))}; cannot put {type(value).__name__} in it", [label])


def _size_value(schema: dict, width: int, height: int, label: str) -> Any:
    types = _types(schema)
    enum = schema.get("enum")
    if isinstance(enum, list):
        parsed = [(e, _parse_size(e)) for e in enum]
        sized = [(e, p) for e, p in parsed if p]
        if sized:
            want_ratio = width / max(height, 1)
            return min(sized, key=lambda ep: (abs(math.log((ep[1][0] / max(ep[1][1], 1)) / want_ratio)), abs(ep[1][0] * ep[1][1] - width * height)))[0]
        numbers = [e for e in enum if isinstance(e, (int, float)) and not isinstance(e, bool)]
        if numbers:
            return _fit_number(max(width, height), schema, "integer" in types, label)
        raise SchemaUnsatisfiable(f"field '{label}' allows only {enum!r}; cannot express {width}x{height}", [label])
    if "string" in types or "any" in types:
        return _fit_text(f"{width}x{height}", schema, label)
    if types & NUMERIC:
        return _fit_number(max(width, height), schema, "integer" in types, label)
    if "array" in types:
        items = resolve_items(schema)
        return [_scalar_for(items, width, label), _scalar_for(items, height, label)]
    raise SchemaUnsatisfiable(f"field '{label}' cannot hold a size", [label])


def _image_value(schema: dict, values: ToolValues, label: str) -> Any:
    types = _types(schema)
    target = resolve_items(schema) if ("array" in types and not types & {"string"}) else schema
    fmt = str(target.get("format", "")).lower()
    desc = " ".join(str(target.get(k, "")) for k in ("title", "description")).lower()
    data = base64.b64encode(values.image or b"").decode("ascii")
    if fmt in ("data-url", "data-uri", "dataurl", "uri", "uri-reference", "url") or "data uri" in desc or "data url" in desc or "data:" in desc:
        text: str = f"data:{values.image_mime or 'application/octet-stream'};base64,{data}"
    else:
        text = data
    max_len = target.get("maxLength")
    if isinstance(max_len, int) and len(text) > max_len:
        raise SchemaUnsatisfiable(f"field '{label}' takes at most {max_len} characters; the image needs {len(text)}", [label])
    return [text] if target is not schema else text


def _role_value(role: str, fld: Field, values: ToolValues) -> Any:
    label = fld.dotted
    schema = fld.schema
    types = _types(schema)
    if role in ("prompt", "negative_prompt"):
        text = getattr(values, role)
        if "array" in types and not types & {"string", "any"}:
            return [_fit_text(text, resolve_items(schema), label)]
        return _fit_text(text, schema, label)
    if role == "image":
        return _image_value(schema, values, label)
    if role == "size":
        width = values.width or values.height
        height = values.height or values.width
        return _size_value(schema, int(width), int(height), label)
    return _scalar_for(schema, getattr(values, role), label)


def _random_seed(schema: dict) -> int:
    lo = schema.get("minimum") if isinstance(schema.get("minimum"), int) else 0
    hi = schema.get("maximum") if isinstance(schema.get("maximum"), int) else 2**31 - 1
    return random.randint(lo, max(lo, hi))


# ----------------------------------------------------------------------------- building


def build_input(schema: Any, values: ToolValues, *, kind: str) -> MappedInput:
    """Map `values` onto `schema`; raise SchemaUnsatisfiable/BadSchema with the exact reason."""
    if not isinstance(schema, dict):
        raise BadSchema(f"input schema is a {type(schema).__name__}, not a JSON object")
    validator_for(schema)  # an invalid schema is reported as such, not as a missing field
    root = schema
    node, many = _object_node(schema, root)
    fields = collect_fields(node, root)
    roles = ["prompt", "negative_prompt", "seed", "width", "height", "size", "steps"] if kind == "image" else ["image", "prompt", "seed"]
    available = [r for r in roles if values.has(r)]
    mapping = assign_roles(fields, values, roles)

    # the value that defines the tool must land somewhere
    essential = "prompt" if kind == "image" else "image"
    if essential not in mapping:
        names = ", ".join(f.dotted for f in fields) or "none"
        raise SchemaUnsatisfiable(f"the app's input schema has no field for the {essential} (fields: {names})", [essential])
    # width/height fields win over a size field; a size field is used only without both of them
    if "size" in mapping and "width" in mapping and "height" in mapping:
        mapping.pop("size")

    assigned: dict[str, str] = {}
    body: dict = {}
    missing: list[str] = []
    by_path = {f.path: f for f in fields}
    mapped_paths = {f.path: role for role, f in mapping.items()}

    def fill(obj_schema: dict, prefix: tuple[str, ...], target: dict) -> bool:
        """Fill one object level; return True when anything was written."""
        wrote = False
        props = obj_schema.get("properties") if isinstance(obj_schema.get("properties"), dict) else {}
        required = set(obj_schema.get("required", []) if isinstance(obj_schema.get("required"), list) else [])
        for name in props:
            path = prefix + (name,)
            fld = by_path.get(path)
            if fld is None:
                continue
            label = fld.dotted
            role = mapped_paths.get(path)
            if role and role in available:
                target[name] = _role_value(role, fld, values)
                assigned[label] = role
                wrote = True
                continue
            if "default" in fld.schema:
                target[name] = copy.deepcopy(fld.schema["default"])
                assigned[label] = "default"
                wrote = True
                continue
            if "const" in fld.schema:
                target[name] = copy.deepcopy(fld.schema["const"])
                assigned[label] = "const"
                wrote = True
                continue
            has_mapped_child = any(p[: len(path)] == path and len(p) > len(path) and mapped_paths[p] in available for p in mapped_paths)
            if "object" in _types(fld.schema) and not fld.recursive and (name in required or has_mapped_child):
                child: dict = {}
                before = len(missing)
                fill(fld.schema, path, child)
                if name in required or (child and len(missing) == before):
                    target[name] = child
                    wrote = True
                continue
            if name not in required:
                continue
            if role == "seed":
                target[name] = _scalar_for(fld.schema, _random_seed(fld.schema), label)
                assigned[label] = "random"
                wrote = True
            elif isinstance(fld.schema.get("enum"), list) and fld.schema["enum"]:
                target[name] = copy.deepcopy(fld.schema["enum"][0])
                assigned[label] = "enum"
                wrote = True
            elif "null" in _types(fld.schema):
                target[name] = None
                assigned[label] = "null"
                wrote = True
            else:
                why = "recursive schema" if fld.recursive else f"type {'/'.join(sorted(_types(fld.schema)))}"
                missing.append(f"{label} ({why}, no default, nothing the tool has matches it)")
        return wrote

    fill(node, (), body)
    if missing:
        first = missing[0].split(" (")[0]
        raise SchemaUnsatisfiable(
            f"required field{'s' if len(missing) > 1 else ''} could not be filled: {'; '.join(missing)}",
            [m.split(" (")[0] for m in missing] or [first],
        )
    final: Any = [body] if many else body
    validate(schema, final)
    return MappedInput(final, assigned, str(node.get("title", "") or schema.get("title", "")))


def field_names(schema: Any) -> list[str]:
    """Dotted names of the input fields the mapping sees (after $ref, allOf, many=True), for logs; [] when unreadable."""
    if not isinstance(schema, dict):
        return []
    try:
        node, _many = _object_node(schema, schema)
        return [f.dotted for f in collect_fields(node, schema)]
    except (BadSchema, _Recursive):
        return []


def validator_for(schema: dict):
    cls = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadSchema(f"the app's schema is not valid JSON Schema: {exc.message}") from None
    return cls(schema)


def validate(schema: dict, instance: Any) -> None:
    validator = validator_for(schema)
    try:
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    except RecursionError:
        raise BadSchema("the app's schema recurses without end") from None
    except Exception as exc:  # an unresolvable $ref surfaces as a referencing error, named differently across versions
        if isinstance(exc, _REFERENCING_ERRORS) or "Unresolvable" in type(exc).__name__ or "Unresolvable" in repr(exc):
            raise BadSchema(f"the app's schema has an unresolvable $ref: {exc}") from None
        raise
    if errors:
        described = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in errors[:5])
        fields = [str(e.absolute_path[0]) if e.absolute_path else (e.message.split("'")[1] if "'" in e.message else "<root>") for e in errors[:5]]
        raise SchemaUnsatisfiable(f"the input built from the schema does not validate: {described}", fields)
