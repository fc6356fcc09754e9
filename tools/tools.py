"""The four built-in tools the agent can call, each with its ToolSpec (tools/specs.py: the one tool table).
Runtime arguments (state, config, call id) are injected by LangGraph and hidden from the model
(InjectedState / InjectedToolCallId are InjectedToolArg). The store, the LLM and the session context come from
the graph's bound dependencies (tools/deps.py), the process-wide ones when none were bound.

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
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from memory.recall import recall
from memory.store import CreationView, MemoryStore

from .backends import generate_with_fallback
from .backends.base import ImageRequest, MeshRequest
from .configuration import ToolConfiguration
from .deps import dependencies
from .enhance import enhance
from .specs import TOOL_TABLE, ToolSpec

log = logging.getLogger("atelier.tools")


def emit(event: dict[str, Any]) -> None:
    """Send a step event to the graph's custom stream (the UI and API clients show it)."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()(event)
    except Exception:  # called outside a graph run (tests, CLI helpers): nothing listens
        pass


HEARTBEAT_SECONDS = 30.0  # how often a long generation renews its creation's lease (it lasts minutes)


def _progress(tool_name: str, creation_id: str | None, store: MemoryStore):
    last_beat = time.monotonic()

    def report(fraction: float | None, message: str) -> None:
        nonlocal last_beat
        emit({"event": "progress", "tool": tool_name, "creation_id": creation_id, "fraction": fraction, "message": message})
        if creation_id and time.monotonic() - last_beat > HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            try:
                store.heartbeat(creation_id)
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
    """The turn is replying: the creation its image tool made is no longer in progress (complete when the 3D
    step attached a model, image_only when no 3D was asked for)."""
    from langchain_core.messages import HumanMessage

    cfg = ToolConfiguration.from_runnable_config(config)
    makers = TOOL_TABLE.producing("image")
    for message in reversed(state.get("messages") or []):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage) and message.name in makers:
            try:
                store = dependencies(config).get_store()
                view = store.find(call_key(message.name, message.tool_call_id, config), cfg.user_id)
                if view is not None and view.status == "in_progress":
                    store.settle(view.id, cfg.user_id)
            except Exception as exc:  # the reply still goes out; recover_interrupted() marks it later
                log.warning("step=settle status=failed reason=%s", exc)


def step_result(tool_name: str, call_id: str, content: dict, started: float, update: dict, backend: str = "", creation_id: str | None = None,
          attempts: list | None = None, **extra: Any) -> Command:
    """A tool's return: its result to the conversation (a ToolMessage), its step (state "steps": tool, seconds,
    backend, creation, fallback attempts, its result) and the state update; the step_end event and the log
    line go out here. Every tool ends with this, a new one too (tools/specs.py)."""
    seconds = round(time.perf_counter() - started, 3)
    step = {"tool": tool_name, "seconds": seconds, "backend": backend, "creation_id": creation_id,
            "attempts": [asdict(a) for a in attempts or []], **extra}
    log.info("step=%s creation=%s backend=%s seconds=%.3f", tool_name, creation_id or "-", backend or "-", seconds)
    emit({"event": "step_end", **step, "result": content})
    message = ToolMessage(json.dumps(content, ensure_ascii=False), tool_call_id=call_id, name=tool_name)
    return Command(update={**update, "steps": [{**step, "result": content}], "messages": [message]})


def _keep_fallbacks(assets: list, attempts: list) -> None:
    """The backends tried before the one that made the asset, with their reasons, in the asset's record: the
    creation's details show the chain later (the reply does not repeat it)."""
    failed = [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]
    for asset in assets if failed else []:
        asset.metadata["fallbacks"] = failed


def _asset_dict(view: CreationView, kind: str) -> dict | None:
    asset = view.asset(kind)
    return None if asset is None else {**asdict(asset), "creation_id": view.id}


@tool
def enhance_prompt(idea: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig) -> Command:
    """Rewrite a short idea into one detailed image prompt (style, lighting, composition), keeping every word of the idea."""
    started = time.perf_counter()
    emit({"event": "step_start", "tool": "enhance_prompt", "input": idea})
    result = enhance(idea, dependencies(config).get_llm())
    content = {"enhanced_prompt": result.prompt, "source": result.source, "attempts": result.attempts}
    return step_result("enhance_prompt", tool_call_id, content, started, {"idea": idea, "enhanced_prompt": result.prompt}, backend=result.source)


@tool
def text_to_image(prompt: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                  config: RunnableConfig) -> Command:
    """Make an image from an image prompt and remember it as a new creation."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    deps = dependencies(config)
    store = deps.get_store()
    key = call_key("text_to_image", tool_call_id, config)
    emit({"event": "step_start", "tool": "text_to_image", "input": prompt})
    view, attempts = store.find(key, cfg.user_id), []
    if view is None:
        request = ImageRequest(prompt=prompt, negative_prompt=cfg.negative_prompt, width=cfg.width, height=cfg.height, seed=cfg.seed, steps=cfg.steps,
                               guidance=cfg.guidance)
        assets, attempts = generate_with_fallback("image", cfg.image_backends, request, _progress("text_to_image", None, store))
        _keep_fallbacks(assets, attempts)
        view = store.create(user_id=cfg.user_id, thread_id=cfg.thread_id, original_prompt=state.get("idea") or prompt,
                            enhanced_prompt=prompt, assets=assets, parent_id=state.get("parent_id"), idempotency_key=key,
                            in_progress=True)
    else:  # a replay of this call: the image was made and committed before the process stopped
        log.info("step=text_to_image creation=%s key=%s action=replayed", view.id, key)
    deps.get_session().working_on(cfg.user_id, view.id, "made")
    image = _asset_dict(view, "image")
    backend = image["backend"] if image else ""
    content = {"creation_id": view.id, "image": image["path"] if image else None, "backend": backend,
               "is_sketch": bool(image and image["meta"].get("is_sketch")),
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    return step_result("text_to_image", tool_call_id, content, started, {"creation_id": view.id, "image": image, "model": None},
                 backend=backend, creation_id=view.id, attempts=attempts)


def working_image(store: MemoryStore, session, user_id: str, state: dict, creation_id: str | None = None
                  ) -> tuple[CreationView | None, str]:
    """The image "it" means, and how it was picked:
      named    - the creation id asked for (scoped to the user: another user's id finds nothing);
      thread   - this thread's latest image (its checkpoint: survives restarts, shared by every process);
      session  - what the user was working on within ATELIER_SESSION_TTL_SECONDS, in any thread (made, modelled or
                 recalled last — even when a newer creation exists);
      newest   - nothing says which (the session expired): the newest image, and the reply says so;
      none     - the user has no image."""
    if creation_id and creation_id != "latest":
        view = store.get(creation_id, user_id=user_id)
        return (view, "named") if view is not None and view.image is not None else (None, "none")
    if (image := state.get("image")) and (view := store.get(image["creation_id"], user_id=user_id)) is not None and view.image:
        return view, "thread"
    if (current := session.current(user_id)) is not None:
        view = store.get(current.creation_id, user_id=user_id)
        if view is not None and view.image is not None:
            return view, "session"
    view = store.latest(user_id, kind="image")
    return (view, "newest") if view is not None and view.image is not None else (None, "none")


@tool
def image_to_3d(creation_id: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                config: RunnableConfig) -> Command:
    """Turn an image into a 3D model (GLB). creation_id is a creation id, or "latest" for the image being worked on."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    deps = dependencies(config)
    store = deps.get_store()
    key = call_key("image_to_3d", tool_call_id, config)
    if (done := store.find_assets(key, cfg.user_id)) is not None:  # a replay: the model is already attached
        log.info("step=image_to_3d creation=%s key=%s action=replayed", done.id, key)
        return _modelstep_result(done, [], tool_call_id, started, cfg, deps, "replayed")
    view, picked = working_image(store, deps.get_session(), cfg.user_id, state, creation_id)
    if view is None:
        missing = f"there is no creation {creation_id} with an image" if picked == "none" and creation_id not in ("", "latest") else \
            "there is no image to turn into 3D yet"
        return step_result("image_to_3d", tool_call_id, {"error": missing}, started, {})
    log.info("step=image_to_3d creation=%s picked=%s", view.id, picked)
    emit({"event": "step_start", "tool": "image_to_3d", "input": view.id, "creation_id": view.id})
    image = view.image
    store.begin_work(view.id, cfg.user_id)  # in_progress under this process's lease until the model is attached
    try:
        request = MeshRequest(image=Path(image.path).read_bytes(), image_mime=image.mime, prompt=view.enhanced_prompt, seed=cfg.seed)
        assets, attempts = generate_with_fallback("model", cfg.model_backends, request, _progress("image_to_3d", view.id, store))
        _keep_fallbacks(assets, attempts)
        view = store.add_assets(view.id, cfg.user_id, assets, idempotency_key=key)
    except Exception as exc:
        store.fail(view.id, cfg.user_id, f"image_to_3d failed: {exc}")
        raise
    return _modelstep_result(view, attempts, tool_call_id, started, cfg, deps, picked)


def _modelstep_result(view: CreationView, attempts: list, tool_call_id: str, started: float, cfg: ToolConfiguration, deps, picked: str) -> Command:
    deps.get_session().working_on(cfg.user_id, view.id, "modelled")
    model = _asset_dict(view, "model")
    backend = model["backend"] if model else ""
    content = {"creation_id": view.id, "model": model["path"] if model else None, "backend": backend, "picked": picked,
               "fallbacks": [{"backend": a.backend, "reason": a.reason} for a in attempts if not a.ok]}
    if picked == "newest":  # nobody said which one: the reply names the pick instead of guessing silently
        content["note"] = f"nothing recent says which image you meant, so I used your newest one, “{view.original_prompt}” ({view.id})"
    return step_result("image_to_3d", tool_call_id, content, started,
                 {"creation_id": view.id, "model": model, "image": _asset_dict(view, "image")},
                 backend=backend, creation_id=view.id, attempts=attempts, picked=picked, note=content.get("note"))


@tool
def recall_similar(query: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig, limit: int = 3) -> Command:
    """Find the user's earlier creations by meaning and time ("the castle from last Thursday", "like before")."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    deps = dependencies(config)
    emit({"event": "step_start", "tool": "recall_similar", "input": query})
    result = recall(deps.get_store(), query, cfg.user_id, limit=max(1, min(int(limit), 20)))
    found = [c.to_dict() for c in result.creations]
    content = {"query": result.query, "mode": result.mode, "window": result.window.phrase if result.window else None,
               **({"window_note": result.window.note} if result.window and result.window.note else {}),
               "creations": [{"creation_id": c["id"], "prompt": c["original_prompt"], "created_at": c["created_at"], "score": c["score"]}
                             for c in found]}
    update: dict[str, Any] = {"recalled": found, "parent_id": found[0]["id"] if found else None}
    if found:
        top = result.creations[0]
        update.update({"creation_id": top.id, "image": _asset_dict(top, "image"), "model": _asset_dict(top, "model")})
        # the user is working on what they recalled now: "make it 3D" in another thread means this one
        deps.get_session().working_on(cfg.user_id, top.id, "recalled", recalled=[c.id for c in result.creations])
    return step_result("recall_similar", tool_call_id, content, started, update, backend=result.mode,
                 creation_id=found[0]["id"] if found else None)


# -- the tool table's entries (tools/specs.py) ----------------------------------------------------------------
def _reply_recall(state: dict, step: dict, note: str) -> str:
    recalled = state.get("recalled") or []
    if not recalled:
        return "I found nothing like that in your memory."
    return "Found in your memory: " + "; ".join(
        f"“{c['original_prompt']}” ({c['created_at'][:16].replace('T', ' ')}, id {c['id']})" for c in recalled[:3])


def _reply_image(state: dict, step: dict, note: str) -> str | None:
    image = state.get("image")
    if not image or not step.get("creation_id"):
        return None
    return f"Image by {step['backend']}{note}: {image['path']}"  # a sketch's placeholder hint is said once per thread (respond)


def _reply_model(state: dict, step: dict, note: str) -> str:
    model = state.get("model")
    if not model or not step.get("creation_id"):
        return "There is no image to turn into 3D yet."
    picked = f"\n{step['note'][:1].upper()}{step['note'][1:]}; name another if you meant a different one." if step.get("note") else ""
    return f"3D model by {step['backend']}{note}: {model['path']}{picked}"


def _summarize_recall(data: dict) -> str:
    found = data.get("creations") or []
    if not found:
        return "found nothing"
    return "found: " + "; ".join(f"{c.get('prompt')!r} (creation {c.get('creation_id')}, {str(c.get('created_at'))[:10]})" for c in found[:3])


ENHANCE_PROMPT = ToolSpec(
    enhance_prompt, label="write the prompt", produces="prompt", switch="enhance",
    summarize=lambda data: f"enhanced prompt: {data.get('enhanced_prompt')}",
    reply=lambda state, step, note: f"Prompt: {state['enhanced_prompt']}" if state.get("enhanced_prompt") else None,
    simulate=lambda args: {"enhanced_prompt": f"{(args or {}).get('idea', 'the idea')}, detailed", "source": "llm"},
)
TEXT_TO_IMAGE = ToolSpec(
    text_to_image, label="make the image", produces="image", needs=("request",),
    summarize=lambda data: f"image made, creation {data.get('creation_id')} ({data.get('backend')})",
    reply=_reply_image,
    simulate=lambda args: {"creation_id": "c0001", "image": "image.png", "backend": "sketch"},
)
IMAGE_TO_3D = ToolSpec(
    image_to_3d, label="make the 3D model", produces="model", needs=("image",),
    impossible="There is no image to turn into 3D yet. Describe an idea and I'll make one.",
    summarize=lambda data: f"3D model made, creation {data.get('creation_id')} ({data.get('backend')})",
    reply=_reply_model,
    simulate=lambda args: {"creation_id": "c0001", "model": "model.glb", "backend": "relief"},
)
RECALL_SIMILAR = ToolSpec(
    recall_similar, label="search your memory", produces="recalled", needs=("memory",),
    impossible="There is nothing in your memory yet. Describe an idea and I'll make your first creation.",
    summarize=_summarize_recall, reply=_reply_recall,
    simulate=lambda args: {"query": (args or {}).get("query", ""), "creations": [
        {"creation_id": "c0000", "prompt": "a stone castle on a hill", "created_at": "2026-11-24T10:00:00"}]},
)
