"""image_to_3d: the image being worked on → a 3D model (GLB), attached to its creation."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from memory.store import CreationView
from tools.backends import generate_with_fallback
from tools.backends.base import MeshRequest
from tools.configuration import ToolConfiguration
from tools.deps import dependencies
from tools.specs import ToolSpec
from tools.tools import _asset_dict, _keep_fallbacks, _progress, assets_of, call_key, emit, log, step_result, working_image


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
                 {"creation_id": view.id, "model": model, "image": _asset_dict(view, "image"), "assets": assets_of(view)},
                 backend=backend, creation_id=view.id, attempts=attempts, picked=picked, note=content.get("note"))


def _reply_model(state: dict, step: dict, note: str) -> str:
    model = state.get("model")
    if not model or not step.get("creation_id"):
        return "There is no image to turn into 3D yet."
    picked = f"\n{step['note'][:1].upper()}{step['note'][1:]}; name another if you meant a different one." if step.get("note") else ""
    return f"3D model by {step['backend']}{note}: {model['path']}{picked}"



SPEC = ToolSpec(
    image_to_3d, label="make the 3D model", produces="model", needs=("image",),
    impossible="There is no image to turn into 3D yet. Describe an idea and I'll make one.",
    summarize=lambda data: f"3D model made, creation {data.get('creation_id')} ({data.get('backend')})",
    reply=_reply_model,
    simulate=lambda args: {"creation_id": "c0001", "model": "model.glb", "backend": "relief"},
    arguments=lambda ask: {"creation_id": "latest"},
)


def register_tools(register) -> None:
    register(SPEC)
