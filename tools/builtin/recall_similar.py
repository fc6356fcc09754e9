"""recall_similar: the user's earlier creations by meaning and time (memory/recall.py)."""
from __future__ import annotations

import time
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import Command

from memory.recall import recall
from tools.configuration import ToolConfiguration
from tools.deps import dependencies
from tools.specs import ToolSpec
from tools.tools import _asset_dict, assets_of, emit, step_result


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
        update.update({"creation_id": top.id, "image": _asset_dict(top, "image"), "model": _asset_dict(top, "model"),
                       "assets": assets_of(top)})
        # the user is working on what they recalled now: "make it 3D" in another thread means this one
        deps.get_session().working_on(cfg.user_id, top.id, "recalled", recalled=[c.id for c in result.creations])
    return step_result("recall_similar", tool_call_id, content, started, update, backend=result.mode,
                 creation_id=found[0]["id"] if found else None)


def _reply_recall(state: dict, step: dict, note: str) -> str:
    recalled = state.get("recalled") or []
    if not recalled:
        return "I found nothing like that in your memory."
    return "Found in your memory: " + "; ".join(
        f"“{c['original_prompt']}” ({c['created_at'][:16].replace('T', ' ')}, id {c['id']})" for c in recalled[:3])



def _summarize_recall(data: dict) -> str:
    found = data.get("creations") or []
    if not found:
        return "found nothing"
    return "found: " + "; ".join(f"{c.get('prompt')!r} (creation {c.get('creation_id')}, {str(c.get('created_at'))[:10]})" for c in found[:3])



SPEC = ToolSpec(
    recall_similar, label="search your memory", produces="recalled", needs=("memory",),
    impossible="There is nothing in your memory yet. Describe an idea and I'll make your first creation.",
    summarize=_summarize_recall, reply=_reply_recall,
    simulate=lambda args: {"query": (args or {}).get("query", ""), "creations": [
        {"creation_id": "c0000", "prompt": "a stone castle on a hill", "created_at": "2026-11-24T10:00:00"}]},
    arguments=lambda ask: {"query": ask.query, "limit": 3},
)


def register_tools(register) -> None:
    register(SPEC)
