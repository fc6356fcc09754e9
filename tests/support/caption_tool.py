"""A tool that brings a new asset kind, as one file: write_caption writes a one-line caption for the image being
worked on (from its prompt: no model) and keeps it in the creation as a "caption" asset (text/plain).

Everything the rest of Atelier needs comes from here: the @tool, the kind, the router's cue words and arguments,
the reply line and the studio's card (the generic one for a text kind). It goes in with one line —
`TOOL_TABLE.register(SPEC)`, or `register_tools` as a built-in module or an `atelier.tools` entry point.
"""
from __future__ import annotations

import time
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.prebuilt import InjectedState
from langgraph.types import Command

from memory.types import GeneratedAsset
from tools.configuration import ToolConfiguration
from tools.deps import dependencies
from tools.kinds import Kind
from tools.specs import ToolSpec
from tools.tools import assets_of, call_key, emit, step_result, working_image

CAPTION = Kind("caption", (".txt",), "text/plain", renderer="text", label="caption")


def caption_for(prompt: str) -> str:
    words = " ".join(prompt.split())[:200].rstrip(" .,")
    return f"{words[:1].upper()}{words[1:]}." if words else "Untitled."


@tool
def write_caption(creation_id: str, state: Annotated[dict, InjectedState], tool_call_id: Annotated[str, InjectedToolCallId],
                  config: RunnableConfig) -> Command:
    """Write a one-line caption for a creation's image. creation_id is a creation id, or "latest" for the image being worked on."""
    cfg = ToolConfiguration.from_runnable_config(config)
    started = time.perf_counter()
    deps = dependencies(config)
    store = deps.get_store()
    view, picked = working_image(store, deps.get_session(), cfg.user_id, state, creation_id)
    if view is None:
        return step_result("write_caption", tool_call_id, {"error": "there is no image to caption yet"}, started, {})
    emit({"event": "step_start", "tool": "write_caption", "input": view.id, "creation_id": view.id})
    text = caption_for(view.original_prompt)
    view = store.add_assets(view.id, cfg.user_id, [GeneratedAsset("caption", text.encode(), "text/plain", "words")],
                            idempotency_key=call_key("write_caption", tool_call_id, config))
    return step_result("write_caption", tool_call_id, {"creation_id": view.id, "caption": text}, started,
                       {"creation_id": view.id, "assets": assets_of(view)}, backend="words", creation_id=view.id, picked=picked)


SPEC = ToolSpec(
    write_caption, label="write the caption", produces="caption", needs=("image",), kind=CAPTION,
    impossible="There is no image to caption yet. Describe an idea and I'll make one.",
    cues=(r"\bcaption (?:it|this|that)\b", r"\bwrite (?:a|the) caption\b"),
    arguments=lambda ask: {"creation_id": "latest"},
    summarize=lambda data: f"caption written for creation {data.get('creation_id')}: {data.get('caption')}",
    reply=lambda state, step, note: f"Caption: {step['result']['caption']}" if step["result"].get("caption") else None,
    simulate=lambda args: {"creation_id": "c0001", "caption": "A stone castle."},
)


def register_tools(register) -> None:
    register(SPEC)
