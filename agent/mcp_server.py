"""Atelier's own MCP server (the official `mcp` SDK's FastMCP): the same creations, recall and history that the
CLI and the API server offer, as tools and resources a desktop client (Claude Desktop, VS Code, Cursor) can show.

    atelier mcp                      stdio; the user is ATELIER_MCP_USER (default "local")
    atelier serve  → /mcp            streamable HTTP in the API server, behind its identity (API keys or
                                     X-Atelier-User, agent/api/routes.py request_user): scoped per user like /creations

Tools (annotations say which only read and which destroy):
    create(idea, make_3d, enhance, size, seed, steps)    the real graph through agent/run.py's run loop, as the CLI
    make_3d(creation_id | image_base64)                   the image → 3D step on a creation, or on a picture sent
    recall(query, limit) · get_creation(creation_id) · list_creations(q, since, until, limit, offset) · forget(id)
    export(creation_id, format, size_mm)                  the model as glb/obj/stl/3mf/ply (tools/export.py)
A creation comes back as a short text, the picture as image content (at most PICTURE_MAX_SIDE px and
PICTURE_MAX_BYTES), the GLB embedded (model/gltf-binary) or, when large, as a resource link, and its ids in
structuredContent. Resources: atelier://creations/{id} (JSON), …/image, …/model. Progress notifications follow the
run loop's step events. A refusal or failure is a tool error (isError) with the CLI's message, never a traceback.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from mcp import types
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from agent.settings import get_settings
from memory.validation import SIZE_MAX, SIZE_MIN, InvalidInput, shown, validate_idea, validate_user_id

log = logging.getLogger("atelier.mcp")
logging.getLogger("mcp").setLevel(logging.WARNING)  # the SDK logs every request at INFO; ours is one line per tool call

PICTURE_MAX_SIDE = 1024  # image content is for showing in a chat: a bounded copy, the full file is a resource
PICTURE_MAX_BYTES = 1_000_000
MODEL_EMBED_MAX_BYTES = 8_000_000  # a larger GLB comes back as a resource link the client reads when it wants it
URI_PREFIX = "atelier://creations/"
GLB_MIME = "model/gltf-binary"

READ_ONLY = types.ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
MAKES = types.ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
DESTROYS = types.ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)


class Refused(Exception):
    """A request Atelier refuses or could not carry out: its message goes back as the tool error's text."""


UserOf = Callable[[Context], str]


# -- results a client can show -------------------------------------------------------------------------------
def creation_uri(creation_id: str, part: str = "") -> str:
    return f"{URI_PREFIX}{creation_id}{'/' + part if part else ''}"


def bounded_picture(data: bytes, max_side: int = PICTURE_MAX_SIDE, max_bytes: int = PICTURE_MAX_BYTES) -> tuple[bytes, str]:
    """A copy of a picture for image content: at most max_side px on its longer side and max_bytes (PNG when that
    fits, else JPEG at falling quality, then smaller), so one tool result never carries a 20 MB photo."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA" if opened.mode in ("RGBA", "LA", "P") else "RGB")
    side = max_side
    while True:
        copy = image.copy()
        copy.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        copy.save(out, "PNG", optimize=True)
        if out.tell() <= max_bytes:
            return out.getvalue(), "image/png"
        for quality in (85, 70, 55):
            out = io.BytesIO()
            copy.convert("RGB").save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue(), "image/jpeg"
        side = max(64, side * 3 // 4)
        if side == 64 and copy.width <= 64 and copy.height <= 64:
            return out.getvalue(), "image/jpeg"


def creation_data(view) -> dict[str, Any]:
    """A creation as a client sees it: what /creations/{id} answers, with resource URIs instead of server paths."""
    data = view.to_dict()
    for asset in data["assets"]:
        asset.pop("path", None)
        asset.pop("rel_path", None)
        asset["uri"] = creation_uri(view.id, asset["kind"]) if asset["kind"] in ("image", "model") else None
    data["uri"] = creation_uri(view.id)
    return data


def creation_blocks(view, *, with_model: bool = True) -> list[types.ContentBlock]:
    """The picture as image content and the GLB embedded (or linked when large)."""
    from pathlib import Path

    blocks: list[types.ContentBlock] = []
    if view.image is not None and Path(view.image.path).is_file():
        try:
            data, mime = bounded_picture(Path(view.image.path).read_bytes())
            blocks.append(types.ImageContent(type="image", data=base64.b64encode(data).decode(), mimeType=mime))
        except Exception as exc:  # an unreadable picture still leaves the link to the file
            log.warning("step=mcp_picture creation=%s status=failed reason=%s", view.id, exc)
            blocks.append(types.ResourceLink(type="resource_link", uri=creation_uri(view.id, "image"), name=f"{view.id}-image",
                                             mimeType=view.image.mime))
    model = view.model
    if with_model and model is not None and Path(model.path).is_file():
        uri = creation_uri(view.id, "model")
        if model.bytes <= MODEL_EMBED_MAX_BYTES:
            blob = base64.b64encode(Path(model.path).read_bytes()).decode()
            blocks.append(types.EmbeddedResource(type="resource", resource=types.BlobResourceContents(uri=uri, mimeType=model.mime, blob=blob)))
        else:
            blocks.append(types.ResourceLink(type="resource_link", uri=uri, name=f"{view.id}.glb", mimeType=model.mime, size=model.bytes,
                                             description="the 3D model (GLB); read this resource to download it"))
    return blocks


def text_result(text: str, structured: dict | None = None, blocks: list | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text), *(blocks or [])], structuredContent=structured)


def error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)


def parse_size(size: str) -> tuple[int, int]:
    """'512x512' as the CLI's --size reads it, with the CLI's messages (named `size` here)."""
    try:
        width, height = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        raise Refused(f"size must look like 512x512, not {shown(size)}") from None
    if not (SIZE_MIN <= width <= SIZE_MAX and SIZE_MIN <= height <= SIZE_MAX):
        raise Refused(f"size must be between {SIZE_MIN}x{SIZE_MIN} and {SIZE_MAX}x{SIZE_MAX}")
    return width, height


# -- the server -------------------------------------------------------------------------------------------------
class _FastMCP(FastMCP):
    """FastMCP, with arguments that break a tool's schema answered in one line per argument ("seed: Input should be
    a valid integer") instead of pydantic's report with its documentation links."""

    async def call_tool(self, name: str, arguments: dict[str, Any]):
        from mcp.server.fastmcp.exceptions import ToolError
        from pydantic import ValidationError

        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.__cause__.errors()]
            log.info("step=mcp_%s status=refused reason=%s", name, "; ".join(problems))
            return error_result(f"{name}: " + "; ".join(problems))


class AtelierMCP:
    """The tools and resources, over whatever transport; `user_of(ctx)` says whose memory a request reads and writes."""

    def __init__(self, user_of: UserOf, *, graph=None, store=None, stateless_http: bool = True,
                 allowed_hosts: list[str] | None = None):
        self.user_of = user_of
        self._graph, self._store = graph, store
        self._graph_lock = threading.Lock()
        security = None
        if allowed_hosts is not None:  # DNS-rebinding protection (the SDK's): only these Host/Origin values
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection="*" not in allowed_hosts, allowed_hosts=allowed_hosts,
                allowed_origins=[f"http://{h}" for h in allowed_hosts] + [f"https://{h}" for h in allowed_hosts])
        self.server = _FastMCP(
            "atelier",
            instructions="Atelier turns ideas into images and 3D models (GLB) and remembers them per user. Use `create` "
                         "for a new idea, `make_3d` for a 3D model of an existing creation or a picture, `recall` / "
                         "`list_creations` to find earlier work, `get_creation` to show one.",
            streamable_http_path="/", stateless_http=stateless_http, json_response=False,
            # (FastMCP's logging.basicConfig is a no-op once agent/logs.py configured the root logger)
            transport_security=security, log_level="WARNING")
        self._register()

    # dependencies, made on first use (the HTTP app is built when the API server imports agent.api.app)
    def store(self):
        if self._store is None:
            from memory.store import get_store

            self._store = get_store()
        return self._store

    def graph(self):
        with self._graph_lock:
            if self._graph is None:
                from agent.graph import build_graph
                from memory.session import checkpointer

                self._graph = build_graph(checkpointer=checkpointer())
            return self._graph

    def user(self, ctx: Context) -> str:
        try:
            return validate_user_id(self.user_of(ctx))
        except InvalidInput as exc:
            raise Refused(str(exc)) from None

    async def guarded(self, tool: str, work) -> types.CallToolResult:
        """Run one tool call: a refusal or failure becomes a tool error with the CLI's words; the log has the rest."""
        started = time.perf_counter()
        try:
            result = await work()
        except Refused as exc:
            result = error_result(str(exc))
        except InvalidInput as exc:
            result = error_result(str(exc))
        except Exception as exc:  # the CLI's promise: one line, no traceback (ATELIER_LOG_LEVEL=DEBUG logs it)
            detail = getattr(exc, "detail", None)  # an HTTPException from the caller's identity
            log.debug("step=mcp_%s status=failed", tool, exc_info=True)
            result = error_result(str(detail) if detail else f"error: {exc.__class__.__name__}: {exc}")
        log.info("step=mcp_%s status=%s seconds=%.3f", tool, "error" if result.isError else "ok", time.perf_counter() - started)
        return result

    async def run_graph(self, ctx: Context, text: str | None, config: dict, expected_steps: int, payload: Any = None) -> dict:
        """One turn through agent/run.py's TurnStream, its step events as MCP progress (steps done + the current
        step's fraction, out of the steps the request is expected to take)."""
        from agent.run import TurnStream, turn_report

        graph = await asyncio.to_thread(self.graph)
        done, shown_progress = 0, 0.0
        stream = TurnStream(graph, text, config, review=None, payload=payload)
        async for mode, event in stream:
            if mode != "custom" or not isinstance(event, dict):
                continue
            kind, message = event.get("event"), None
            if kind == "step_start":
                message = f"{event.get('tool')} …"
                value = done
            elif kind == "progress":
                fraction = event.get("fraction")
                value = done + (max(0.0, min(1.0, float(fraction))) if isinstance(fraction, (int, float)) else 0.0)
                message = event.get("message") or None
            elif kind == "step_end":
                done += 1
                value = done
                message = f"{event.get('tool')} done ({event.get('backend') or '-'}, {event.get('seconds', 0):.1f}s)"
            else:
                continue
            value = max(value, shown_progress)  # progress never goes back
            shown_progress = value
            await ctx.report_progress(value, max(expected_steps, done + 1 if kind != "step_end" else done), message)
        assert stream.result is not None
        return turn_report(stream.result, config)

    def creation_result(self, report: dict, user: str) -> types.CallToolResult:
        view = self.store().get(report["creation_id"], user_id=user) if report.get("creation_id") else None
        reply = report.get("reply") or ""
        failed = reply.startswith("Sorry")
        if view is None:  # the turn only chatted, or a step failed before anything was made
            return types.CallToolResult(content=[types.TextContent(type="text", text=reply or "Nothing was made.")],
                                        isError=failed, structuredContent={"creation_id": None, "reply": reply})
        parts = [f"Creation {view.id}: “{view.original_prompt}”"]
        if view.image is not None:
            parts.append(f"image by {view.image.backend}")
        if view.model is not None:
            parts.append(f"3D model by {view.model.backend} ({view.model.bytes // 1024} KB GLB)")
        lines = [", ".join(parts) + f" — {report['seconds']['total']:.1f}s."]
        if report.get("enhanced_prompt") and report["enhanced_prompt"] != view.original_prompt:
            lines.append(f"Prompt: {report['enhanced_prompt']}")
        lines += [f"Note: {n}" for n in report.get("notes") or []]
        lines += [f"{f['tool']}: {f['backend']} unavailable ({f['reason']})" for f in report.get("fallbacks") or []]
        if failed:
            lines.append(reply)
        structured = {"creation_id": view.id, "thread_id": report.get("thread_id"), "user_id": user, "status": view.status,
                      "original_prompt": view.original_prompt, "enhanced_prompt": view.enhanced_prompt,
                      "backends": report.get("backends"), "tool_calls": report.get("tool_calls"), "seconds": report.get("seconds"),
                      "uri": creation_uri(view.id), "image": creation_uri(view.id, "image") if view.image else None,
                      "model": creation_uri(view.id, "model") if view.model else None}
        result = text_result("\n".join(lines), structured, creation_blocks(view))
        result.isError = failed  # a step failed (the 3D one, say): what was made still comes back, flagged
        return result

    def _register(self) -> None:  # noqa: C901 (one closure per tool keeps each tool's schema beside its code)
        server, settings = self.server, get_settings()

        @server.tool(name="create", title="Create an image and a 3D model", annotations=MAKES, structured_output=False)
        async def create(
            idea: Annotated[str, Field(description="What to make, in your own words (\"a red kite over a green hill\").")],
            ctx: Context,
            make_3d: Annotated[bool, Field(description="Also turn the image into a 3D model (GLB).")] = True,
            enhance: Annotated[bool, Field(description="Let the model rewrite the idea into a detailed image prompt first.")] = True,
            size: Annotated[str, Field(description=f"Image size WxH, each side {SIZE_MIN}..{SIZE_MAX}.")] = "512x512",
            seed: Annotated[int | None, Field(description="Seed for a repeatable result (0..2^63-1).")] = None,
            steps: Annotated[int | None, Field(description="Sampling steps for learned image models (1..200); default: the model's.")] = None,
        ) -> types.CallToolResult:
            """Make an image from an idea (and a 3D model of it), remembered as a new creation. Returns the picture,
            the GLB and the creation id."""
            async def work():
                from agent.configuration import Configuration

                user = self.user(ctx)
                text = validate_idea(idea, settings.max_idea_chars)
                width, height = parse_size(size)
                configurable = {"thread_id": uuid.uuid4().hex, "user_id": user, "width": width, "height": height,
                                "enhance": bool(enhance), "auto_3d": bool(make_3d), "review_prompt": False,
                                "seed": seed, "steps": steps}
                try:
                    Configuration.from_runnable_config({"configurable": configurable})
                except ValueError as exc:
                    raise Refused(str(exc)) from None
                report = await self.run_graph(ctx, text, {"configurable": configurable}, int(bool(enhance)) + 1 + int(bool(make_3d)))
                return self.creation_result(report, user)
            return await self.guarded("create", work)

        @server.tool(name="make_3d", title="Make a 3D model", annotations=MAKES, structured_output=False)
        async def make_3d(
            ctx: Context,
            creation_id: Annotated[str | None, Field(description="One of your creations (its image becomes the model).")] = None,
            image_base64: Annotated[str | None, Field(description="Or a picture of your own (PNG, JPEG or WebP), base64; it is "
                                                      "kept as a creation of its own (source: upload).")] = None,
            filename: Annotated[str | None, Field(description="The picture's file name, kept with the upload.")] = None,
            description: Annotated[str | None, Field(description="What the picture shows, in your words (kept with the upload; "
                                                     "recall finds it by them).")] = None,
            seed: Annotated[int | None, Field(description="Seed for a repeatable result.")] = None,
        ) -> types.CallToolResult:
            """Turn an image into a 3D model (GLB): a creation's image, or a picture you send. Returns the GLB."""
            async def work():
                from agent.configuration import Configuration
                from agent.uploads import image_of, picture_configurable, picture_turn

                user = self.user(ctx)
                if (creation_id is None) == (image_base64 is None):
                    raise Refused("give exactly one of creation_id or image_base64")
                configurable = picture_configurable(user, uuid.uuid4().hex, seed)
                try:  # before anything is stored
                    Configuration.from_runnable_config({"configurable": configurable})
                except ValueError as exc:
                    raise Refused(str(exc)) from None
                if image_base64 is not None:
                    view = await asyncio.to_thread(self.upload, user, image_base64, filename, description)
                else:
                    view = self.store().get(str(creation_id), user_id=user) if _plausible_id(creation_id) else None
                    if view is None or view.image is None:  # unknown, or someone else's: the same answer
                        raise Refused(f"there is no creation {shown(creation_id)} with an image for user {user!r}")
                payload = picture_turn(view.id, image_of(view))  # its image is this new thread's image: "make it 3D" means it
                report = await self.run_graph(ctx, None, {"configurable": configurable}, 1, payload=payload)
                report["creation_id"] = report.get("creation_id") or view.id
                return self.creation_result(report, user)
            return await self.guarded("make_3d", work)

        @server.tool(name="recall", title="Recall earlier creations", annotations=READ_ONLY, structured_output=False)
        async def recall(
            query: Annotated[str, Field(description="What you remember, with time words if you like (\"the castle from last week\").")],
            ctx: Context,
            limit: Annotated[int, Field(description="How many to return (1..100).")] = 5,
        ) -> types.CallToolResult:
            """Find your earlier creations by meaning and time. Returns each one's id, prompt and date, with links to its files."""
            async def work():
                from memory.recall import recall as recall_memory

                user = self.user(ctx)
                if not isinstance(query, str) or not query.strip():
                    raise Refused("the query is empty")
                if len(query) > 300:
                    raise Refused("the query is longer than 300 characters")
                if not 1 <= limit <= 100:
                    raise Refused("limit must be between 1 and 100")
                found = await asyncio.to_thread(recall_memory, self.store(), query, user, limit)
                return self.listing(found.creations, {"query": query, "search": found.query, "mode": found.mode,
                                                      "window": [found.window.start.isoformat(), found.window.end.isoformat()] if found.window else None})
            return await self.guarded("recall", work)

        @server.tool(name="get_creation", title="Show a creation", annotations=READ_ONLY, structured_output=False)
        async def get_creation(
            creation_id: Annotated[str, Field(description="The creation's id.")], ctx: Context,
        ) -> types.CallToolResult:
            """One of your creations: its prompts, status and files (the picture, the GLB) and its lineage."""
            async def work():
                user = self.user(ctx)
                store = self.store()
                view = store.get(creation_id, user_id=user) if _plausible_id(creation_id) else None
                if view is None:
                    raise Refused(f"no creation {shown(creation_id)} for user {user!r}")
                data = creation_data(view)
                data["lineage"] = {"parent": view.parent_id if view.parent_id and store.get(view.parent_id, user_id=user) else None,
                                   "remixes": [c.id for c in store.children(view.id) if c.user_id == user]}
                text = f"Creation {view.id} ({view.status}, {view.created_at[:16].replace('T', ' ')}): “{view.original_prompt}”"
                return text_result(text, data, creation_blocks(view))
            return await self.guarded("get_creation", work)

        @server.tool(name="list_creations", title="List creations", annotations=READ_ONLY, structured_output=False)
        async def list_creations(
            ctx: Context,
            q: Annotated[str | None, Field(description="Search by meaning (and time words); empty = newest first.")] = None,
            since: Annotated[str | None, Field(description="ISO date/date-time or a phrase (yesterday, last week).")] = None,
            until: Annotated[str | None, Field(description="Exclusive end: ISO date/date-time or a phrase.")] = None,
            limit: Annotated[int, Field(description="Page size (1..100).")] = 20,
            offset: Annotated[int, Field(description="How many to skip.")] = 0,
        ) -> types.CallToolResult:
            """Page through your creations, newest first or by meaning, within a time window."""
            async def work():
                from agent.api.routes import MAX_OFFSET, time_bound
                from memory.recall import recall as recall_memory

                user = self.user(ctx)
                if not 1 <= limit <= 100:
                    raise Refused("limit must be between 1 and 100")
                if not 0 <= offset <= MAX_OFFSET:
                    raise Refused(f"offset must be between 0 and {MAX_OFFSET}")
                start, end = time_bound(since, "since"), time_bound(until, "until")
                if start and end and start >= end:
                    raise Refused("since must be before until")
                words = " ".join((q or "").split())
                if len(words) > 300:
                    raise Refused("q is longer than 300 characters")
                store = self.store()
                if words:
                    found = await asyncio.to_thread(recall_memory, store, words, user, 100 if (start or end) else min(100, offset + limit))
                    views = [v for v in found.creations if (start is None or v.created >= start) and (end is None or v.created < end)]
                    views, mode = views[offset:offset + limit], found.mode
                else:
                    views = await asyncio.to_thread(store.list, user, limit=limit, offset=offset, since=start, until=end)
                    mode = "recent"
                return self.listing(views, {"q": words, "mode": mode, "since": start and start.isoformat(),
                                            "until": end and end.isoformat(), "limit": limit, "offset": offset})
            return await self.guarded("list_creations", work)

        @server.tool(name="forget", title="Forget a creation", annotations=DESTROYS, structured_output=False)
        async def forget(
            creation_id: Annotated[str, Field(description="The creation to delete, with its files no other creation uses.")],
            ctx: Context,
        ) -> types.CallToolResult:
            """Delete one of your creations: its rows, its vector (recall no longer finds it) and its files. Cannot be undone."""
            async def work():
                user = self.user(ctx)
                result = await asyncio.to_thread(self.store().forget, creation_id, user) if _plausible_id(creation_id) else None
                if result is None:
                    raise Refused(f"no creation {shown(creation_id)} for user {user!r}; nothing was deleted")
                text = (f"forgot {result['id']}: {len(result['files_removed'])} file(s) removed, {len(result['files_kept'])} kept "
                        f"(used by other creations), {result['remixes_orphaned']} remix(es) now without a parent")
                return text_result(text, result)
            return await self.guarded("forget", work)

        @server.tool(name="export", title="Export a 3D model", annotations=READ_ONLY, structured_output=False)
        async def export(
            creation_id: Annotated[str, Field(description="The creation whose 3D model to export.")],
            format: Annotated[str, Field(description="glb | obj | stl | 3mf | ply (stl/3mf for a slicer; usdz is not offered).")],
            ctx: Context,
            size_mm: Annotated[float | None, Field(description="Largest dimension in millimetres (stl/3mf default 100).")] = None,
        ) -> types.CallToolResult:
            """A creation's 3D model as a file for a slicer, Blender or another viewer (tools/export.py), embedded in the result."""
            async def work():
                from tools.export import ExportError, export_creation

                user = self.user(ctx)
                if not _plausible_id(creation_id):
                    raise Refused(f"no creation {shown(creation_id)} for user {user!r}")
                try:
                    result = await asyncio.to_thread(export_creation, self.store(), creation_id, user, format, size_mm)
                except LookupError:
                    raise Refused(f"no creation {shown(creation_id)} for user {user!r}") from None
                except ExportError as exc:
                    raise Refused(str(exc)) from None
                if len(result.data) > MODEL_EMBED_MAX_BYTES:
                    raise Refused(f"the {result.facts['format']} file is {len(result.data)} bytes, too large to embed; "
                                  f"use `atelier export` or GET /creations/{creation_id}/export")
                uri = creation_uri(creation_id, f"export.{result.facts['format']}")
                facts = result.facts
                text = (f"{creation_id}{result.extension}: {facts['format'].upper()}, {facts['bytes']} bytes"
                        + (f", {facts['size_mm']:g} mm" if facts.get("size_mm") else "")
                        + ("" if facts.get("watertight") in (None, True) else ", NOT watertight (a slicer may need to repair it)"))
                blob = types.BlobResourceContents(uri=uri, mimeType=result.mime, blob=base64.b64encode(result.data).decode())
                return text_result(text, facts, [types.EmbeddedResource(type="resource", resource=blob)])
            return await self.guarded("export", work)

        # -- resources ---------------------------------------------------------------------------------------
        @server.resource(URI_PREFIX + "{creation_id}", name="creation", mime_type="application/json",
                         description="One of your creations: prompts, status, assets (with their resource URIs).")
        async def creation_resource(creation_id: str, ctx: Context) -> str:
            return json.dumps(creation_data(self.resource_view(ctx, creation_id)), ensure_ascii=False)

        @server.resource(URI_PREFIX + "{creation_id}/image", name="creation image", mime_type="image/png",
                         description="The creation's picture (the stored file: PNG, or JPEG/WebP for uploads).")
        async def image_resource(creation_id: str, ctx: Context) -> bytes:
            return self.resource_file(ctx, creation_id, "image")

        @server.resource(URI_PREFIX + "{creation_id}/model", name="creation model", mime_type=GLB_MIME,
                         description="The creation's 3D model (GLB).")
        async def model_resource(creation_id: str, ctx: Context) -> bytes:
            return self.resource_file(ctx, creation_id, "model")

    def resource_view(self, ctx: Context, creation_id: str):
        user = self.user(ctx)
        view = self.store().get(creation_id, user_id=user) if _plausible_id(creation_id) else None
        if view is None:
            raise Refused(f"no creation {shown(creation_id)} for user {user!r}")
        return view

    def resource_file(self, ctx: Context, creation_id: str, kind: str) -> bytes:
        from pathlib import Path

        asset = self.resource_view(ctx, creation_id).asset(kind)
        if asset is None or not Path(asset.path).is_file():
            raise Refused(f"creation {creation_id} has no {kind}")
        return Path(asset.path).read_bytes()

    def listing(self, views: list, extra: dict) -> types.CallToolResult:
        rows = [creation_data(v) for v in views]
        lines = [f"{v.id}  {v.created_at[:16].replace('T', ' ')}  {v.status:<10} “{v.original_prompt}”"
                 + (f"  (score {v.score:.2f})" if v.score is not None else "") for v in views]
        links = [types.ResourceLink(type="resource_link", uri=creation_uri(v.id), name=v.id, mimeType="application/json",
                                    description=v.original_prompt[:200]) for v in views]
        return text_result("\n".join(lines) or "nothing found", {**extra, "creations": rows}, links)

    def upload(self, user: str, image_base64: str, filename: str | None, description: str | None = None):
        """A picture the client sent, validated and kept as a creation of its own (memory/upload.py)."""
        from memory.settings import get_settings as memory_settings
        from memory.upload import store_upload

        limit = memory_settings().upload_max_bytes
        if len(image_base64) > (limit + 2) // 3 * 4 + 4:  # refused before it is decoded
            raise Refused(f"the picture is larger than {limit} bytes (ATELIER_UPLOAD_MAX_BYTES)")
        try:
            data = base64.b64decode(image_base64, validate=True)
        except (ValueError, TypeError):
            raise Refused("image_base64 is not valid base64") from None
        if description is not None:
            description = validate_idea(description, get_settings().max_idea_chars, field="description")
        return store_upload(self.store(), user, data, filename=filename, description=description)


def _plausible_id(creation_id: Any) -> bool:
    from memory.validation import is_creation_id

    return is_creation_id(creation_id)


# -- transports ---------------------------------------------------------------------------------------------------
def allowed_hosts() -> list[str]:
    """Host header values /mcp answers (the SDK's DNS-rebinding protection): loopback, plus ATELIER_MCP_ALLOWED_HOSTS."""
    extra = [h.strip() for h in get_settings().mcp_allowed_hosts.split(",") if h.strip()]
    return ["127.0.0.1:*", "localhost:*", "[::1]:*", *extra]


class McpHttp:
    """The server as streamable HTTP for the API server: the instance is the /mcp route's ASGI app and `running()`
    goes in the server's lifespan (a fresh session manager each time: the SDK's runs once). Stateless: every request
    carries its own identity, so a session id never stands in for who is calling."""

    def __init__(self, user_of_request: Callable[[Any], str]):
        def user_of(ctx: Context) -> str:
            request = getattr(ctx.request_context, "request", None)
            if request is None:
                raise Refused("no HTTP request to take the caller's identity from")
            return user_of_request(request)

        self.mcp = AtelierMCP(user_of, stateless_http=True, allowed_hosts=allowed_hosts())
        self.manager = None

    @contextlib.asynccontextmanager
    async def running(self):
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        settings = self.mcp.server.settings
        from agent.api.auth import body_limit

        manager = StreamableHTTPSessionManager(app=self.mcp.server._mcp_server, stateless=True, json_response=False,
                                               security_settings=settings.transport_security, max_request_body_size=body_limit("/mcp"))
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope, receive, send) -> None:
        if self.manager is None:
            from starlette.responses import JSONResponse

            return await JSONResponse({"detail": "the MCP server is not running"}, status_code=503)(scope, receive, send)
        await self.manager.handle_request(scope, receive, send)


def run_stdio(user: str | None = None) -> int:
    """`atelier mcp`: the server on stdin/stdout. Everything else that would write to stdout (a library's print,
    llama.cpp's C-level output) goes to stderr instead: stdout carries only the protocol."""
    import os
    import sys

    import anyio
    from mcp.server.stdio import stdio_server

    who = validate_user_id(user or get_settings().mcp_user, "ATELIER_MCP_USER")
    mcp = AtelierMCP(lambda ctx: who)
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol_out = io.TextIOWrapper(os.fdopen(protocol_fd, "wb", buffering=0), encoding="utf-8", write_through=True)
    log.info("step=mcp_stdio user=%s", who)

    async def serve() -> None:
        async with stdio_server(stdout=anyio.wrap_file(protocol_out)) as (read, write):
            low = mcp.server._mcp_server  # FastMCP.run_stdio_async does the same, on the process's own stdout
            await low.run(read, write, low.create_initialization_options())

    anyio.run(serve)
    return 0
