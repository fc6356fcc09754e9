"""What every tool shares: its step events (emit), its return (step_result), its idempotency key (call_key), the
creation's assets by kind (assets_of), the image "it" means (working_image) and the turn's settling. The tools
themselves are one module each (tools/builtin/<name>.py), registered in the tool table (tools/specs.py).
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
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from memory.store import CreationView, MemoryStore

from .configuration import ToolConfiguration
from .deps import dependencies
from .specs import TOOL_TABLE

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




def assets_of(view: CreationView) -> dict[str, dict]:
    """The creation's assets by kind (its latest of each): what state["assets"] holds for the creation being worked on."""
    return {kind: asset for kind in dict.fromkeys(a.kind for a in view.assets) if (asset := _asset_dict(view, kind))}


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



_MOVED = {"enhance_prompt": "enhance_prompt", "text_to_image": "text_to_image", "image_to_3d": "image_to_3d",
          "recall_similar": "recall_similar", "ENHANCE_PROMPT": "enhance_prompt", "TEXT_TO_IMAGE": "text_to_image",
          "IMAGE_TO_3D": "image_to_3d", "RECALL_SIMILAR": "recall_similar"}


def __getattr__(name: str):
    """The built-in tools moved to tools/builtin/<name>.py (one module each); older imports still find them."""
    if name in _MOVED:
        import importlib

        module = importlib.import_module(f"tools.builtin.{_MOVED[name]}")
        return getattr(module, "SPEC" if name.isupper() else name)
    raise AttributeError(name)
