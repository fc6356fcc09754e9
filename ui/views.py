"""What the studio shows, as plain data: element props, step texts and kind, specific failure messages.

Nothing here talks to Chainlit, so it is easy to test and reuse (the API or another UI could show the same).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any


def tool_spec(tool: str | None):
    """The tool's entry in the tool table (tools/specs.py), or None for a name it does not know."""
    from tools.specs import TOOL_TABLE

    return TOOL_TABLE.get(tool)


def produces(tool: str | None) -> str | None:
    """What the tool's result adds: prompt | image | model | recalled (None: nothing the studio shows)."""
    spec = tool_spec(tool)
    return spec.produces if spec is not None else None


def asset_kind(name: str | None):
    """The asset kind's entry in the kind table (tools/kinds.py), or None."""
    from tools.kinds import KINDS

    return KINDS.get(name)


def kind_card(kind: str, event: dict) -> list[str]:
    """The generic step output for an asset a tool made, from its kind's renderer (a tool may bring its own card)."""
    result = event.get("result") or {}
    known = asset_kind(kind)
    label = known.words if known else kind
    value = result.get(kind)
    lines = [f"{_capitalised(label)}: {value}" if known and known.renderer == "text" and value else
             (f"{_capitalised(label)} file: `{value}`" if value else "")]
    if result.get("creation_id"):
        lines.append(f"creation `{result['creation_id']}`")
    return lines


def step_label(tool: str | None) -> str:
    """The step in words for people: "make the 3D model" (the tool's spec), "finish that" for an unknown one."""
    spec = tool_spec(tool)
    return spec.label if spec is not None else "finish that"


def tool_kind(tool: str | None) -> str:
    """Which backends the tool runs on: the kind of asset it makes ("image" for the rest)."""
    kind = produces(tool)
    return kind if kind in ("image", "model") else "image"


def backend_label(backend: str, kind: str) -> str:
    """"the local sketch backend", "Openfabric image-to-3D": each backend class's own label (tools/backends)."""
    from tools.backends import backend_label as declared_label

    return declared_label(backend, kind)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def asset_url(creation_id: str, kind: str, sha256: str | None = None) -> str:
    return f"/atelier/asset/{creation_id}/{kind}" + (f"?v={sha256[:12]}" if sha256 else "")


def thumb_url(creation_id: str, sha256: str | None = None) -> str:
    return f"/atelier/thumb/{creation_id}" + (f"?v={sha256[:12]}" if sha256 else "")


def short_reason(reason: str, limit: int = 160) -> str:
    """One readable line from an exception text: no traceback, no noise, bounded."""
    text = str(reason or "").strip()
    text = text.removeprefix("error: ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("Traceback", "File ", "  "))]
    text = lines[-1] if lines and "Traceback" in str(reason) else " ".join(lines)
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def why_unavailable(reason: str) -> str:
    r = (reason or "").lower()
    if any(w in r for w in ("unreachable", "connect", "refused", "timed out", "timeout", "resolve", "name or service",
                            "network", "offline", "dns", "ssl", "host")):
        return "unreachable"
    if any(w in r for w in ("not configured", "no app", "missing", "unknown backend", "no backends")):
        return "not configured"
    if any(w in r for w in ("401", "403", "unauthori", "forbidden", "token", "api key")):
        return "refused the credentials"
    if any(w in r for w in ("429", "rate", "quota", "busy")):
        return "busy"
    return f"failed ({short_reason(reason, 90)})"


def fallback_notes(tool: str, attempts: Iterable[dict], used_backend: str | None) -> list[str]:
    """'Openfabric text-to-image unreachable — used the local sketch backend' for every failed try."""
    return kind_fallback_notes(tool_kind(tool), attempts, used_backend)


def kind_fallback_notes(kind: str, attempts: Iterable[dict], used_backend: str | None) -> list[str]:
    notes = []
    for attempt in attempts or []:
        if attempt.get("ok"):
            continue
        failed = _capitalised(backend_label(attempt.get("backend", "?"), kind))
        used = backend_label(used_backend, kind) if used_backend else "the next backend"
        notes.append(f"{failed} {why_unavailable(attempt.get('reason', ''))} — used {used}")
    return notes


def failure_message(tool: str | None, reason: str) -> str:
    """A tool failed for the whole request: say which step, and why, in a sentence."""
    what = step_label(tool)
    full = " ".join(str(reason or "").removeprefix("error: ").split())
    text = short_reason(reason, 300)
    m = re.match(r"every (image|model) backend failed \((.*)\)$", full, re.S)
    if m:
        kind = m.group(1)
        parts = [p.split(":", 1) for p in re.split(r"; (?=[a-z0-9_-]+: )", m.group(2)) if ":" in p]
        detail = _capitalised("; ".join(f"{backend_label(b.strip(), kind)} {why_unavailable(r)}" for b, r in parts))
        return f"Sorry — I couldn't {what}: {detail or text}. Nothing was saved; try again, or pick another backend in the settings."
    if "no image to turn into 3d" in text.lower():
        return "There is no image to turn into 3D yet. Describe an idea and I'll make one first."
    return f"Sorry — I couldn't {what}: {text}"


def unexpected_error(exc: BaseException) -> str:
    return (f"Sorry — something went wrong while working on that ({exc.__class__.__name__}: {short_reason(str(exc), 200)}). "
            "Your earlier creations are safe; please try again.")


def step_output_end(event: dict) -> str:
    """The text a finished tool step shows: its result, backend and seconds."""
    tool = event.get("tool", "")
    result = event.get("result") or {}
    seconds = event.get("seconds")
    timing = f"{seconds:.2f} s" if isinstance(seconds, (int, float)) else ""
    lines: list[str] = []
    kind = produces(tool)
    if kind == "prompt":
        lines.append(result.get("enhanced_prompt") or "")
        source = result.get("source") or event.get("backend")
        lines.append(f"_written by {source} · {timing}_" if source else f"_{timing}_")
    elif kind in ("image", "model"):
        if result.get("error"):
            lines.append(str(result["error"]))
        else:
            backend = event.get("backend") or result.get("backend") or "?"
            extra = " (a placeholder sketch — no image model is configured)" if result.get("is_sketch") else ""
            lines.append(f"backend: **{backend}**{extra} · {timing}")
            lines += [f"⚠ {n}" for n in fallback_notes(tool, event.get("attempts") or [], backend)]
            if result.get("note"):
                lines.append(f"ℹ {result['note']}")
            if result.get("creation_id"):
                lines.append(f"creation `{result['creation_id']}`")
    elif kind == "recalled":
        found = result.get("creations") or []
        how = "by meaning" if result.get("mode") == "semantic" else "most recent first"
        window = f", {result['window']}" if result.get("window") else ""
        lines.append(f"{len(found)} found ({how}{window}) · {timing}")
        lines += [f"- {c.get('prompt')} (`{c.get('creation_id')}`)" for c in found[:5]]
    elif (spec := tool_spec(tool)) is not None and spec.card is not None and not result.get("error"):  # the tool's own card
        lines.append(spec.card(event) or "")
        lines.append(f"_{timing}_" if timing else "")
    elif kind is not None and asset_kind(kind) is not None and not result.get("error"):  # a kind a tool added
        lines += kind_card(kind, event)
        lines.append(f"_{timing}_" if timing else "")
    elif spec is not None:  # any other tool: its own one-line summary
        lines.append(str(result["error"]) if result.get("error") else spec.summarize(result))
        lines.append(f"_{timing}_" if timing else "")
    else:
        lines.append(timing)
    return "\n".join(x for x in lines if x)


def reply_text(message: Any, fallback: str, shown: set[str]) -> str:
    """The reply's words without the lines of the tools whose results the studio already shows (a creation card
    shows the prompt, the image and the model): built from the reply's parts (agent/nodes.reply_parts), or the
    whole reply when it has none (a chat answer, an older thread)."""
    parts = ((getattr(message, "additional_kwargs", None) or {}).get("reply") or {}) if message is not None else {}
    if not parts or "lines" not in parts:
        return fallback
    lines = [parts.get("words") or ""]
    lines += [line for tool, line in parts.get("lines") or [] if tool not in shown]
    lines += [parts.get("saved") or ""] + list(parts.get("outages") or []) + [hint for _, hint in parts.get("hints") or []]
    return "\n\n".join(line for line in lines if line)


def step_title(tool: str, event: dict) -> str:
    """"text_to_image · sketch · 0.41 s": the tool, the backend that did the work, the seconds."""
    parts = [tool]
    backend = event.get("backend") or (event.get("result") or {}).get("backend")
    if backend and produces(tool) != "recalled":  # a recall's "backend" is its search mode, said in the output
        parts.append(str(backend))
    seconds = event.get("seconds")
    if isinstance(seconds, (int, float)):
        parts.append(f"{seconds:.1f} s")
    return " · ".join(parts)


def step_heading(tool: str) -> str:
    """The first line of a running step: what it does, in words ("Make the 3D model")."""
    return f"**{_capitalised(step_label(tool))}**"


def progress_line(event: dict) -> str:
    fraction = event.get("fraction")
    pct = f"{fraction * 100:3.0f}% · " if isinstance(fraction, (int, float)) else ""
    return f"{pct}{event.get('message') or ''}".strip()


# -- creations ------------------------------------------------------------------------------------
def _when(created_at: str) -> str:
    try:
        dt = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return created_at or ""
    return dt.astimezone(UTC).isoformat()


def creation_props(view, *, detail: bool = False, parent=None, children: Iterable = (), notes: Iterable[str] = (),
                   status: str | None = None) -> dict[str, Any]:
    """Props for public/elements/Creation.jsx from a memory.store.CreationView."""
    image, model = view.image, view.model
    if detail:  # the creation's details keep the fallback chain its record holds (tools.tools._keep_fallbacks)
        notes = [*notes, *(n for asset, kind in ((image, "image"), (model, "model")) if asset is not None
                           for n in kind_fallback_notes(kind, asset.meta.get("fallbacks") or [], asset.backend))]
    if status is None:
        status = "complete" if model else ("image" if image else "empty")
    return {
        "id": view.id,
        "prompt": view.original_prompt,
        "enhanced_prompt": view.enhanced_prompt,
        "created_at": _when(view.created_at),
        "image_url": asset_url(view.id, "image", image.sha256) if image else None,
        "model_url": asset_url(view.id, "model", model.sha256) if model else None,
        "image_file": f"atelier-{view.id}{_ext(image.mime, '.png')}" if image else None,
        "model_file": f"atelier-{view.id}{_ext(model.mime, '.glb')}" if model else None,
        "image_backend": image.backend if image else None,
        "model_backend": model.backend if model else None,
        "is_sketch": bool(image and image.meta.get("is_sketch")),
        "status": status,
        "notes": [n for n in notes if n],
        "detail": detail,
        "parent": {"id": parent.id, "prompt": parent.original_prompt} if parent else None,
        "children": [{"id": c.id, "prompt": c.original_prompt} for c in children],
        "assets": other_assets(view),
    }


TEXT_PREVIEW_CHARS = 2000


def other_assets(view) -> list[dict[str, Any]]:
    """The creation's assets of the kinds tools added (image and model have their own props above), each with its
    kind's renderer (tools/kinds.py), its URL and, for a text kind, its words."""
    from pathlib import Path

    out = []
    for kind in dict.fromkeys(a.kind for a in view.assets):
        if kind in ("image", "model"):
            continue
        asset, known = view.asset(kind), asset_kind(kind)
        renderer = known.renderer if known else "file"
        item = {"kind": kind, "label": known.words if known else kind, "renderer": renderer,
                "url": asset_url(view.id, kind, asset.sha256), "backend": asset.backend}
        if renderer == "text":
            try:
                item["text"] = Path(asset.path).read_text(encoding="utf-8", errors="replace")[:TEXT_PREVIEW_CHARS]
            except OSError:  # a file gone from disk: the card says nothing rather than failing the whole card
                item["text"] = None
        out.append(item)
    return out


def _ext(mime: str, default: str) -> str:
    return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "model/gltf-binary": ".glb"}.get(mime, default)


def history_item(view) -> dict[str, Any]:
    image = view.image
    return {
        "id": view.id,
        "prompt": view.original_prompt,
        "enhanced_prompt": view.enhanced_prompt,
        "created_at": _when(view.created_at),
        "thumb_url": thumb_url(view.id, image.sha256) if image else None,
        "has_model": view.model is not None,
        # in_progress / interrupted / failed get a badge; older views without a status read as finished
        "status": getattr(view, "status", None),
        "status_reason": getattr(view, "status_reason", None),
        "backend": image.backend if image else None,
        "parent_id": view.parent_id,
        "score": view.score,
    }


def history_props(views: list, *, title: str, query: str = "", mode: str = "history", offset: int = 0,
                  has_more: bool = False, note: str = "") -> dict[str, Any]:
    return {"title": title, "query": query, "mode": mode, "offset": offset, "has_more": has_more, "note": note,
            "items": [history_item(v) for v in views]}


def recall_title(query: str, result) -> str:
    n = len(result.creations)
    window = f" {result.window.phrase}" if getattr(result, "window", None) else ""
    if not n:
        return f"Nothing in your memory matches “{query}”"
    how = "by meaning" if result.mode == "semantic" else "newest first"
    return f"{n} creation{'s' if n != 1 else ''} for “{query}”{window} ({how})"
