"""The graph's state: the conversation plus what the current thread has made so far."""
from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    intent: dict | None  # the router's reading of the current request (name, confidence, margin, via)
    idea: str | None  # the idea being made in this turn
    enhanced_prompt: str | None
    creation_id: str | None  # the thread's latest creation
    parent_id: str | None  # what the current creation remixes
    image: dict | None  # AssetView of the latest image (path, sha256, backend ...)
    model: dict | None  # AssetView of the latest 3D model
    recalled: list[dict]  # the last recall's creations
    steps: Annotated[list[dict[str, Any]], operator.add]  # one entry per tool run: tool, seconds, backend, creation
