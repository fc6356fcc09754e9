"""text_to_image: an image prompt → an image, remembered as a new creation (the image backends, in fallback order)."""
from __future__ import annotations

import time
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from tools.backends import generate_with_fallback
from tools.backends.base import ImageRequest
from tools.configuration import ToolConfiguration
from tools.deps import dependencies
from tools.specs import ToolSpec
from tools.tools import _asset_dict, _keep_fallbacks, _progress, assets_of, call_key, emit, log, step_result


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
    return step_result("text_to_image", tool_call_id, content, started, {"creation_id": view.id, "image": image, "model": None, "assets": assets_of(view)},
                 backend=backend, creation_id=view.id, attempts=attempts)


def _reply_image(state: dict, step: dict, note: str) -> str | None:
    image = state.get("image")
    if not image or not step.get("creation_id"):
        return None
    return f"Image by {step['backend']}{note}: {image['path']}"  # a sketch's placeholder hint is said once per thread (respond)



SPEC = ToolSpec(
    text_to_image, label="make the image", produces="image", needs=("request",),
    summarize=lambda data: f"image made, creation {data.get('creation_id')} ({data.get('backend')})",
    reply=_reply_image,
    simulate=lambda args: {"creation_id": "c0001", "image": "image.png", "backend": "sketch"},
    arguments=lambda ask: {"prompt": ask.state.get("enhanced_prompt") or ask.idea},
)


def register_tools(register) -> None:
    register(SPEC)
