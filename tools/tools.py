"""The four tools the agent can call. Runtime arguments (state, config, call id) are injected by LangGraph
and hidden from the model (InjectedState / InjectedToolCallId are InjectedToolArg)."""
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

from agent.configuration import Configuration
from agent.llm import get_llm
from memory.recall import recall
from memory.session import last_creation_cache
from memory.store import CreationView, get_store

from .backends import generate_with_fallback
from .backends.base import ImageRequest, MeshRequest
from .enhance import enhance

log = logging.getLogger("atelier.tools")


def emit(event: dict[str, Any]) -> None:
    """Send a step event to the graph's custom stream (the UI and API clients show it)."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()(event)
    except Exception:  # called outside a graph run (tests, CLI helpers): nothing listens
        pass


def _progress(tool_name: str, creation_id: str | None):
    def report(fraction: float | None, message: str) -> None:
        emit({"event": "progress", "tool": tool_name, "creation_id": creation_id, "fraction": fraction, "message": message})
    return report


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
    cfg = Configuration.from_runnable_config(config)
    started = time.perf_counter()
    emit({"event": "step_start", "tool": "text_to_image", "input": prompt})
    request = ImageRequest(prompt=prompt, negative_prompt=cfg.negative_prompt, width=cfg.width, height=cfg.height, seed=cfg.seed, steps=cfg.steps,
                           guidance=cfg.guidance)
    assets, attempts = generate_with_fallback("image", cfg.image_backends, request, _progress("text_to_image", None))
    view = get_store().create(user_id=cfg.user_id, thread_id=cfg.thread_id, original_prompt=state.get("idea") or prompt,
                              enhanced_prompt=prompt, assets=assets, parent_id=state.get("parent_id"))
    last_creation_cache().put(cfg.user_id, view.id)
    image = _asset_dict(view, "image")
    content = {"creation_id": view.id, "image": image["path"] if image else None, "backend": assets[0].backend,
               "is_sketch": bool(assets[0].metadata.get("is_sketch")),
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    return _done("text_to_image", tool_call_id, content, started, {"creation_id": view.id, "image": image, "model": None},
                 backend=assets[0].backend, creation_id=view.id, attempts=attempts)


@tool
def image_to_3d(creation_id: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                config: RunnableConfig) -> Command:
    """Turn an image into a 3D model (GLB). creation_id is a creation id, or "latest" for the most recent image."""
    cfg = Configuration.from_runnable_config(config)
    started = time.perf_counter()
    store = get_store()
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
    request = MeshRequest(image=Path(image.path).read_bytes(), image_mime=image.mime, prompt=view.enhanced_prompt, seed=cfg.seed)
    assets, attempts = generate_with_fallback("model", cfg.model_backends, request, _progress("image_to_3d", view.id))
    view = store.add_assets(view.id, cfg.user_id, assets)
    last_creation_cache().put(cfg.user_id, view.id)
    model = _asset_dict(view, "model")
    content = {"creation_id": view.id, "model": model["path"] if model else None, "backend": assets[0].backend,
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    return _done("image_to_3d", tool_call_id, content, started,
                 {"creation_id": view.id, "model": model, "image": _asset_dict(view, "image")},
                 backend=assets[0].backend, creation_id=view.id, attempts=attempts)


@tool
def recall_similar(query: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig, limit: int = 3) -> Command:
    """Find the user's earlier creations by meaning and time ("the castle from last Thursday", "like before")."""
    cfg = Configuration.from_runnable_config(config)
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
