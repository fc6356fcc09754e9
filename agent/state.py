"""The graph's state: the conversation plus what the current thread has made so far."""
from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


def add_checked_messages(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """add_messages, with every new user message checked on the way in: control characters and ANSI escapes
    stripped, longer than ATELIER_MAX_IDEA_CHARS refused (memory/validation.py). All paths into the graph (CLI,
    API server, studio, a direct invoke) pass through here, before the first node runs or anything is stored."""
    merged = add_messages(left, right)
    known = {id(m) for m in left or []}
    for i, message in enumerate(merged):
        if id(message) not in known and isinstance(message, HumanMessage):
            merged[i] = _checked(message)
    return merged


def _checked(message: HumanMessage) -> HumanMessage:
    from agent.settings import get_settings
    from memory.validation import check_length, clean_bounded, clean_text

    limit = get_settings().max_idea_chars
    if isinstance(message.content, str):
        content: Any = clean_bounded(message.content, limit, "the message")
    else:  # content blocks (API clients): clean each text block, bound the text as a whole
        content = [{**b, "text": clean_text(b["text"])} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
                   for b in message.content]
        check_length(" ".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)),
                     limit, "the message")
    return message if content == message.content else message.model_copy(update={"content": content})


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_checked_messages]
    intent: dict | None  # the router's reading of the current request (name, confidence, margin, via)
    idea: str | None  # the idea being made in this turn
    enhanced_prompt: str | None
    creation_id: str | None  # the thread's latest creation
    parent_id: str | None  # what the current creation remixes
    image: dict | None  # AssetView of the latest image (path, sha256, backend ...)
    model: dict | None  # AssetView of the latest 3D model
    recalled: list[dict]  # the last recall's creations
    steps: Annotated[list[dict[str, Any]], operator.add]  # one entry per tool run: tool, seconds, backend, creation
