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
from . import calibration
from .decision import MODIFICATION, TurnContext, decide as choose, model_messages, remix_idea
from models.llm import current_model_key, get_llm
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


def _resolve_policy(policy: str) -> tuple[str, str]:
    """auto -> model | hybrid by the measured accuracy of the configured model (not loaded for this)."""
    if policy != "auto":
        return policy, f"policy={policy}"
    try:
        key = current_model_key()
    except Exception as exc:  # no server, no file: the router decides and the log says why
        return "hybrid", f"auto: model key unavailable ({exc}); router decides"
    resolved = calibration.resolve(policy, key)
    return resolved.policy, resolved.reason


def decide(state: dict, config: RunnableConfig) -> dict[str, Any]:
    if _failed(state.get("messages", [])):
        return {}  # a tool failed: stop this request and tell the user why (respond)
    cfg = Configuration.from_runnable_config(config)
    started = time.perf_counter()
    history = state.get("messages", [])
    request, done = current_turn(history)
    new_turn = not done
    intent = get_router().classify(request) if new_turn or not state.get("intent") else None
    intent_dict = {"name": intent.name, "confidence": intent.confidence, "margin": intent.margin, "via": intent.via} if intent else state["intent"]
    intent_obj = Intent(**intent_dict)
    store = get_store()
    latest_image = None if state.get("image") or "text_to_image" in done else store.latest(cfg.user_id, kind="image")
    has_image = bool(state.get("image")) or "text_to_image" in done or latest_image is not None
    has_memory = has_image or store.latest(cfg.user_id) is not None
    ctx = TurnContext(request=request, done=done, has_prompt="enhance_prompt" in done, has_image=has_image, has_memory=has_memory,
                      enhance=cfg.enhance, auto_3d=cfg.auto_3d)
    policy, policy_reason = _resolve_policy(cfg.decision_policy)
    exists = {"prompt": state.get("enhanced_prompt"), "image": (state.get("image") or {}).get("creation_id") or (latest_image.id if latest_image else None),
              "model": (state.get("model") or {}).get("creation_id"), "recalled": state.get("recalled") or [], "memory": has_memory}
    # The LLM is loaded only if the policy actually asks it (router-only turns never load it).
    decision = choose(ctx, intent_obj, policy, None if policy == "router" else get_llm,
                      lambda: model_messages(history, exists, ctx))
    log.info("step=decide thread=%s tool=%s source=%s policy=%s reason=%s seconds=%.3f", cfg.thread_id or "-", decision.tool or "reply",
             decision.source, policy, f"{decision.reason}; {policy_reason}", time.perf_counter() - started)
    update: dict[str, Any] = {"intent": intent_dict}
    if new_turn:  # a new request starts a new creation; the last image stays available for "make it 3D"
        update.update({"idea": None, "enhanced_prompt": None, "parent_id": None, "recalled": []})
    who = {"decision": decision.source, "decision_reason": decision.reason, "policy": policy}
    if decision.tool is None:
        if decision.source != "router":  # the model's words (or the guard's), completed by respond
            update["messages"] = [AIMessage(content=_usable_words(decision.content or "") or "", additional_kwargs=who)]
        return update
    args = decision.args
    if args is None:
        args = tool_arguments(decision.tool, request, intent_obj.name, state if not new_turn else {**state, **update})
    call = {"name": decision.tool, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}
    who["arguments_from"] = "model" if decision.args is not None else "router"
    update["messages"] = [AIMessage(content="", tool_calls=[call], additional_kwargs=who)]
    return update


def _usable_words(text: str) -> str | None:
    """The model's own reply, unless it is empty or the small model's self-introduction."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) < 2 or "SmolLM" in text or "Hugging Face" in text:
        return None
    return text[:1500]


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
    last = (state.get("messages") or [None])[-1]
    # A reply the model decided on (its own words, possibly empty) was put in the history by decide.
    decided = isinstance(last, AIMessage) and not last.tool_calls and bool((last.additional_kwargs or {}).get("decision"))
    words = str(last.content).strip() if decided else ""
    if (failed := _failed(state.get("messages", []))) is not None:
        text = f"Sorry — {failed.name or 'a step'} failed: {str(failed.content).removeprefix('error: ')}"
    elif done:
        text = summary(state, done, steps)
    elif words:
        text = ""
    elif (state.get("intent") or {}).get("name") == "to_3d":
        text = "There is no image to turn into 3D yet. Describe an idea and I'll make one."
    else:
        text = chat_reply(request)
    text = "\n".join(part for part in (words, text) if part)
    if decided:
        return {"messages": [AIMessage(id=last.id, content=text, additional_kwargs=last.additional_kwargs)]}
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
        parent = next((c for c in recalled if c["id"] == state.get("parent_id")), None) if "text_to_image" in done else None
        remix = f" — a remix of “{parent['original_prompt']}”" if parent else ""
        lines.append(f"Creation {state['creation_id']} is saved{remix}; ask for it any time.")
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
