"""The graph's nodes: decide (which tool next, or reply), review (human-in-the-loop pause) and respond."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt

from memory.store import get_store

from .configuration import Configuration
from .decision import MODIFICATION, TurnContext, decide as choose, remix_idea
from .llm import get_llm
from .prompts import REPLY_SYSTEM
from .router import Intent, get_router

log = logging.getLogger("atelier.agent")


def current_turn(messages: list[AnyMessage]) -> tuple[str, list[str]]:
    """The latest user request and the tools already run for it, in order."""
    done: list[str] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return _text(message), list(reversed(done))
        if isinstance(message, ToolMessage):
            done.append(message.name or "")
    return "", list(reversed(done))


def _text(message: AnyMessage) -> str:
    content = message.content
    if isinstance(content, list):  # multimodal content blocks from API clients
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content).strip()


def tool_error_message(exc: Exception) -> str:
    """What a failed tool tells the conversation: the reason, never a stack trace."""
    log.warning("step=tool status=failed reason=%s", exc)
    return f"error: {exc}"


def _failed(messages: list[AnyMessage]) -> ToolMessage | None:
    last = messages[-1] if messages else None
    return last if isinstance(last, ToolMessage) and last.status == "error" else None


def decide(state: dict, config: RunnableConfig) -> dict[str, Any]:
    if _failed(state.get("messages", [])):
        return {}  # a tool failed: stop this request and tell the user why (respond)
    cfg = Configuration.from_runnable_config(config)
    started = time.perf_counter()
    request, done = current_turn(state.get("messages", []))
    new_turn = not done
    intent = get_router().classify(request) if new_turn or not state.get("intent") else None
    intent_dict = {"name": intent.name, "confidence": intent.confidence, "margin": intent.margin, "via": intent.via} if intent else state["intent"]
    intent_obj = Intent(**intent_dict)
    has_image = bool(state.get("image")) or "text_to_image" in done or get_store().latest(cfg.user_id, kind="image") is not None
    ctx = TurnContext(request=request, done=done, has_prompt="enhance_prompt" in done, has_image=has_image,
                      enhance=cfg.enhance, auto_3d=cfg.auto_3d)
    llm = None if cfg.decision_policy == "router" else get_llm()
    decision = choose(ctx, intent_obj, cfg.decision_policy, llm)
    log.info("step=decide thread=%s tool=%s source=%s reason=%s seconds=%.3f", cfg.thread_id or "-", decision.tool or "reply",
             decision.source, decision.reason, time.perf_counter() - started)
    update: dict[str, Any] = {"intent": intent_dict}
    if new_turn:  # a new request starts a new creation; the last image stays available for "make it 3D"
        update.update({"idea": None, "enhanced_prompt": None, "parent_id": None, "recalled": []})
    if decision.tool is None:
        return update
    args = tool_arguments(decision.tool, request, intent_obj.name, state if not new_turn else {**state, **update})
    call = {"name": decision.tool, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}
    update["messages"] = [AIMessage(content="", tool_calls=[call], additional_kwargs={"decision": decision.source})]
    return update


def tool_arguments(tool: str, request: str, intent: str, state: dict) -> dict[str, Any]:
    recalled = state.get("recalled") or []
    if tool == "enhance_prompt":
        parent = recalled[0]["original_prompt"] if intent == "remix" and recalled else None
        return {"idea": remix_idea(request, parent)}
    if tool == "text_to_image":
        parent = recalled[0]["original_prompt"] if intent == "remix" and recalled else None
        return {"prompt": state.get("enhanced_prompt") or remix_idea(request, parent)}
    if tool == "image_to_3d":
        return {"creation_id": "latest"}
    if tool == "recall_similar":
        m = MODIFICATION.search(request) if intent == "remix" else None
        return {"query": (request[: m.start()] if m else request).strip(" ,") or request, "limit": 3}
    raise ValueError(f"unknown tool {tool}")


def review(state: dict, config: RunnableConfig) -> dict[str, Any]:
    """Pause after enhance_prompt so the user can accept or edit the prompt (LangGraph interrupt)."""
    answer = interrupt({"type": "review_prompt", "idea": state.get("idea"), "enhanced_prompt": state.get("enhanced_prompt"),
                        "question": "Accept this prompt, or send an edited one."})
    edited = answer.get("prompt") if isinstance(answer, dict) else answer
    if isinstance(edited, str) and edited.strip() and edited.strip().lower() not in ("ok", "yes", "accept", "y"):
        return {"enhanced_prompt": edited.strip()[:2000]}
    return {}


def route_after_tools(state: dict, config: RunnableConfig) -> str:
    last = state["messages"][-1]
    if isinstance(last, ToolMessage) and last.name == "enhance_prompt" and Configuration.from_runnable_config(config).review_prompt:
        return "review"
    return "decide"


def route_after_decide(state: dict) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "respond"


def respond(state: dict, config: RunnableConfig) -> dict[str, Any]:
    request, done = current_turn(state.get("messages", []))
    steps = state.get("steps", [])[-len(done):] if done else []
    if (failed := _failed(state.get("messages", []))) is not None:
        text = f"Sorry — {failed.name or 'a step'} failed: {str(failed.content).removeprefix('error: ')}"
    elif done:
        text = summary(state, done, steps)
    elif (state.get("intent") or {}).get("name") == "to_3d":
        text = "There is no image to turn into 3D yet. Describe an idea and I'll make one."
    else:
        text = chat_reply(request)
    return {"messages": [AIMessage(content=text)]}


def summary(state: dict, done: list[str], steps: list[dict]) -> str:
    lines = []
    recalled = state.get("recalled") or []
    if "recall_similar" in done:
        if recalled:
            lines.append("Found in your memory: " + "; ".join(f"“{c['original_prompt']}” ({c['created_at'][:16].replace('T', ' ')}, id {c['id']})" for c in recalled[:3]))
        else:
            lines.append("I found nothing like that in your memory.")
    if "enhance_prompt" in done and state.get("enhanced_prompt"):
        lines.append(f"Prompt: {state['enhanced_prompt']}")
    for step in steps:
        failed = [a for a in step.get("attempts", []) if not a["ok"]]
        note = "".join(f" ({a['backend']} unavailable — {a['reason']}; used {step['backend']})" for a in failed[:1])
        if step["tool"] == "text_to_image" and state.get("image"):
            sketch = " — a placeholder sketch, no image model is configured" if state["image"]["meta"].get("is_sketch") else ""
            lines.append(f"Image by {step['backend']}{sketch}{note}: {state['image']['path']}")
        if step["tool"] == "image_to_3d":
            if state.get("model"):
                lines.append(f"3D model by {step['backend']}{note}: {state['model']['path']}")
            else:
                lines.append("There is no image to turn into 3D yet.")
    if state.get("creation_id") and ({"text_to_image", "image_to_3d"} & set(done)):
        lines.append(f"Creation {state['creation_id']} is saved; ask for it any time.")
    return "\n".join(lines) or "Done."


_CANNED = ("I'm Atelier: tell me an idea (\"a glowing dragon on a cliff at sunset\") and I'll write a prompt, make an image and a 3D model. "
           "You can also ask for past creations (\"the castle from last week\") or remix them (\"like before, but with wings\").")


def chat_reply(request: str) -> str:
    try:
        text = get_llm().chat([{"role": "system", "content": REPLY_SYSTEM}, {"role": "user", "content": request[:1000]}],
                              max_tokens=60, temperature=0.3, seed=0).strip()
    except Exception as exc:  # a reply is a courtesy; never fail the turn for it
        log.warning("step=reply status=failed reason=%s", exc)
        text = ""
    text = re.sub(r"\s+", " ", text)
    if len(text) < 2 or "SmolLM" in text or "Hugging Face" in text:
        return _CANNED
    return text
