"""The four tools the agent can call. Runtime arguments (state, config, call id) are injected by LangGraph
and hidden from the model (InjectedState / InjectedToolCallId are InjectedToolArg).

text_to_image and image_to_3d write memory once per decided tool call: each commit carries the call's key (the
API server's run id, else the thread and tool call id), and a replay of the call (a restarted server re-running
an unfinished run, a graph resumed from its checkpoint) finds what the first attempt committed instead of
generating again. A creation is in_progress while its run works on it; settle_turn() ends that when the turn
replies, and a failed 3D step marks it failed with the reason."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.prebuilt import InjectedState
from langchain_core.tools import InjectedToolCallId
from langgraph.types import Command

from models.llm import get_llm
from memory.recall import recall
from memory.session import last_creation_cache
from memory.store import CreationView, get_store

from .backends import generate_with_fallback
from .backends.base import ImageRequest, MeshRequest
from .configuration import ToolConfiguration
from .enhance import enhance

log = logging.getLogger("atelier.tools")


def emit(event: dict[str, Any]) -> None:
    """Send a step event to the graph's custom stream (the UI and API clients show it)."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()(event)
    except Exception:  # called outside a graph run (tests, CLI helpers): nothing listens
        pass


HEARTBEAT_SECONDS = 30.0  # how often a long generation renews its creation's lease (it lasts minutes)


def _progress(tool_name: str, creation_id: str | None):
    last_beat = time.monotonic()

    def report(fraction: float | None, message: str) -> None:
        nonlocal last_beat
        emit({"event": "progress", "tool": tool_name, "creation_id": creation_id, "fraction": fraction, "message": message})
        if creation_id and time.monotonic() - last_beat > HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            try:
                get_store().heartbeat(creation_id)
            except Exception as exc:  # a missed heartbeat only shortens the lease
                log.warning("step=heartbeat creation=%s status=failed reason=%s", creation_id, exc)
    return report


def call_key(tool_name: str, tool_call_id: str, config: RunnableConfig | None) -> str:
    """The idempotency key of one decided tool call. The API server's run id is stable when it retries a run (its
    retry appends the input again, so the graph decides anew with fresh call ids; one run calls each tool at most
    once). Elsewhere (CLI, studio) a resumed graph re-runs the checkpointed call with its own id."""
    configurable = (config or {}).get("configurable") or {}
    if run_id := configurable.get("run_id"):
        return f"run:{run_id}:{tool_name}"
    return f"call:{configurable.get('thread_id') or '-'}:{tool_call_id}"


def settle_turn(state: dict, config: RunnableConfig) -> None:
    """The turn is replying: the creation its text_to_image made is no longer in progress (complete when the 3D
    step attached a model, image_only when no 3D was asked for)."""
    from langchain_core.messages import HumanMessage

    cfg = ToolConfiguration.from_runnable_config(config)
    for message in reversed(state.get("messages") or []):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage) and message.name == "text_to_image":
            try:
                store = get_store()
                view = store.find(call_key("text_to_image", message.tool_call_id, config), cfg.user_id)
                if view is not None and view.status == "in_progress":
                    store.settle(view.id, cfg.user_id)
            except Exception as exc:  # the reply still goes out; recover_interrupted() marks it later
                log.warning("step=settle status=failed reason=%s", exc)


def _done(tool_name: str, call_id: str, content: dict, started: float, update: dict, backend: str = "", creation_id: str | None = None,
          attempts: list | None = None) -> Command:
    seconds = round(time.perf_counter() - started, 3)
    step = {"tool": tool_name, "seconds": seconds, "backend": backend, "creation_id": creation_id,
            "attempts": [asdict(a) for a in attempts or []]}
    log.info("step=%s creation=%s backend=%s seconds=%.3f", tool_name, creation_id or "-", backend or "-", seconds)
    emit({"event": "step_end", **step, "result": content})
    message = ToolMessage(json.dumps(content, ensure_ascii=False), tool_call_id=call_id, name=tool_name)
    return Command(update={**update, "steps": [step], "messages": [message]})


def _asset_dict(view: CreationView, kind: str) -> dict | None:
    asset = view.asset(kind)
    return None if asset is None else {**asdict(asset), "creation_id": view.id}


@tool
def enhance_prompt(idea: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig) -> Command:
    """Rewrite a short idea into one detailed image prompt (style, lighting, composition), keeping every word of the idea."""
    started = time.perf_counter()
    emit({"event": "step_start", "tool": "enhance_prompt", "input": idea})
    result = enhance(idea, get_llm())
    content = {"enhanced_prompt": result.prompt, "source": result.source, "attempts": result.attempts}
    return _done("enhance_prompt", tool_call_id, content, started, {"idea": idea, "enhanced_prompt": result.prompt}, backend=result.source)


@tool
def text_to_image(prompt: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                  config: RunnableConfig) -> Command:
    """Make an image from an image prompt and remember it as a new creation."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    store = get_store()
    key = call_key("text_to_image", tool_call_id, config)
    emit({"event": "step_start", "tool": "text_to_image", "input": prompt})
    view, attempts = store.find(key, cfg.user_id), []
    if view is None:
        request = ImageRequest(prompt=prompt, negative_prompt=cfg.negative_prompt, width=cfg.width, height=cfg.height, seed=cfg.seed, steps=cfg.steps,
                               guidance=cfg.guidance)
        assets, attempts = generate_with_fallback("image", cfg.image_backends, request, _progress("text_to_image", None))
        view = store.create(user_id=cfg.user_id, thread_id=cfg.thread_id, original_prompt=state.get("idea") or prompt,
                            enhanced_prompt=prompt, assets=assets, parent_id=state.get("parent_id"), idempotency_key=key,
                            in_progress=True)
    else:  # a replay of this call: the image was made and committed before the process stopped
        log.info("step=text_to_image creation=%s key=%s action=replayed", view.id, key)
    last_creation_cache().put(cfg.user_id, view.id)
    image = _asset_dict(view, "image")
    backend = image["backend"] if image else ""
    content = {"creation_id": view.id, "image": image["path"] if image else None, "backend": backend,
               "is_sketch": bool(image and image["meta"].get("is_sketch")),
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    return _done("text_to_image", tool_call_id, content, started, {"creation_id": view.id, "image": image, "model": None},
                 backend=backend, creation_id=view.id, attempts=attempts)


@tool
def image_to_3d(creation_id: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                config: RunnableConfig) -> Command:
    """Turn an image into a 3D model (GLB). creation_id is a creation id, or "latest" for the most recent image."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    store = get_store()
    key = call_key("image_to_3d", tool_call_id, config)
    if (done := store.find_assets(key, cfg.user_id)) is not None:  # a replay: the model is already attached
        log.info("step=image_to_3d creation=%s key=%s action=replayed", done.id, key)
        return _model_done(done, [], tool_call_id, started, cfg)
    view = None
    if creation_id and creation_id != "latest":
        view = store.get(creation_id, user_id=cfg.user_id)  # scoped: another user's id finds nothing
    if view is None and state.get("image"):
        view = store.get(state["image"]["creation_id"], user_id=cfg.user_id)
    if view is None and (cached := last_creation_cache().get(cfg.user_id)):
        view = store.get(cached, user_id=cfg.user_id)
    if view is None or view.image is None:
        view = store.latest(cfg.user_id, kind="image")
    if view is None or view.image is None:
        content = {"error": "there is no image to turn into 3D yet"}
        return _done("image_to_3d", tool_call_id, content, started, {})
    emit({"event": "step_start", "tool": "image_to_3d", "input": view.id, "creation_id": view.id})
    image = view.image
    store.begin_work(view.id, cfg.user_id)  # in_progress under this process's lease until the model is attached
    try:
        request = MeshRequest(image=Path(image.path).read_bytes(), image_mime=image.mime, prompt=view.enhanced_prompt, seed=cfg.seed)
        assets, attempts = generate_with_fallback("model", cfg.model_backends, request, _progress("image_to_3d", view.id))
        view = store.add_assets(view.id, cfg.user_id, assets, idempotency_key=key)
    except Exception as exc:
        store.fail(view.id, cfg.user_id, f"image_to_3d failed: {exc}")
        raise
    return _model_done(view, attempts, tool_call_id, started, cfg)


def _model_done(view: CreationView, attempts: list, tool_call_id: str, started: float, cfg: ToolConfiguration) -> Command:
    last_creation_cache().put(cfg.user_id, view.id)
    model = _asset_dict(view, "model")
    backend = model["backend"] if model else ""
    content = {"creation_id": view.id, "model": model["path"] if model else None, "backend": backend,
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    return _done("image_to_3d", tool_call_id, content, started,
                 {"creation_id": view.id, "model": model, "image": _asset_dict(view, "image")},
                 backend=backend, creation_id=view.id, attempts=attempts)


@tool
def recall_similar(query: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig, limit: int = 3) -> Command:
    """Find the user's earlier creations by meaning and time ("the castle from last Thursday", "like before")."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    emit({"event": "step_start", "tool": "recall_similar", "input": query})
    result = recall(get_store(), query, cfg.user_id, limit=max(1, min(int(limit), 20)))
    found = [c.to_dict() for c in result.creations]
    content = {"query": result.query, "mode": result.mode, "window": result.window.phrase if result.window else None,
               "creations": [{"creation_id": c["id"], "prompt": c["original_prompt"], "created_at": c["created_at"], "score": c["score"]}
                             for c in found]}
    update: dict[str, Any] = {"recalled": found, "parent_id": found[0]["id"] if found else None}
    if found:
        top = result.creations[0]
        update.update({"creation_id": top.id, "image": _asset_dict(top, "image"), "model": _asset_dict(top, "model")})
    return _done("recall_similar", tool_call_id, content, started, update, backend=result.mode,
                 creation_id=found[0]["id"] if found else None)


TOOLS = [enhance_prompt, text_to_image, image_to_3d, recall_similar]
