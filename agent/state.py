"""The graph's state: the conversation plus what the current thread has made so far."""
from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


def add_checked_messages(left: list[AnyMessage], right: Any) -> list[AnyMessage]:
    """add_messages, with every new user message cleaned on the way in: control characters and ANSI escapes
    stripped (memory/validation.py). All paths into the graph (CLI, API server, studio, a direct invoke) pass
    here. It never refuses: a reducer that raised would leave the failed input in the thread's pending writes and
    every later read of the thread would fail with it. The length limit is checked by the first node
    (agent/graph.py: decide_within_limits)."""
    merged = add_messages(left, right)
    known = {id(m) for m in left or []}
    for i, message in enumerate(merged):
        if id(message) not in known and isinstance(message, HumanMessage):
            merged[i] = _cleaned(message)
    return merged


def _cleaned(message: HumanMessage) -> HumanMessage:
    from memory.validation import clean_text

    if isinstance(message.content, str):
        content: Any = clean_text(message.content).strip()
    else:  # content blocks (API clients): clean each text block
        content = [{**b, "text": clean_text(b["text"])} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
                   for b in message.content]
    return message if content == message.content else message.model_copy(update={"content": content})


def check_request_length(messages: list[AnyMessage]) -> None:
    """The latest user message within ATELIER_MAX_IDEA_CHARS, else InvalidInput (a ValueError)."""
    from agent.settings import get_settings
    from memory.validation import check_length

    for message in reversed(messages or []):
        if isinstance(message, HumanMessage):
            content = message.content
            text = content if isinstance(content, str) else " ".join(
                b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
            check_length(text, get_settings().max_idea_chars, "the message")
            return


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_checked_messages]
    intent: dict | None  # the router's reading of the current request (name, confidence, margin, via)
    idea: str | None  # the idea being made in this turn
    enhanced_prompt: str | None
    creation_id: str | None  # the thread's latest creation
    parent_id: str | None  # what the current creation remixes
    assets: dict[str, dict]  # the current creation's assets by kind (tools/kinds.py): {"image": AssetView dict, ...}
    image: dict | None  # assets["image"], kept beside it for older readers (the turn report, the studio)
    model: dict | None  # assets["model"], likewise
    recalled: list[dict]  # the last recall's creations
    steps: Annotated[list[dict[str, Any]], operator.add]  # one entry per tool run: tool, seconds, backend, creation
