"""The graph's nodes: decide (which tool next, or reply), review (human-in-the-loop pause) and respond.

They work with the dependencies the graph factory bound (tools/deps.py: store, LLM, session context) and with
what the tool table says about each tool (tools/specs.py); the only tool names here are the router's own
arguments for the tools its plans use (tool_arguments)."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import interrupt

from models.llm import current_model_key
from tools.deps import dependencies
from tools.kinds import KINDS
from tools.specs import TOOL_TABLE, ArgumentRequest
from tools.tools import working_image

from . import calibration
from .configuration import Configuration
from .decision import MODIFICATION, TurnContext, decide as choose, model_messages, plan_of, remix_idea
from .prompts import REPLY_SYSTEM
from .router import Intent, get_router
from .state import AgentState

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


def decide(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    if _failed(state.get("messages", [])):
        return {}  # a tool failed: stop this request and tell the user why (respond)
    cfg = Configuration.from_runnable_config(config)
    deps = dependencies(config)
    started = time.perf_counter()
    history = state.get("messages", [])
    request, done = current_turn(history)
    new_turn = not done
    intent = get_router().classify(request) if new_turn or not state.get("intent") else None
    intent_dict = {"name": intent.name, "confidence": intent.confidence, "margin": intent.margin, "via": intent.via} if intent else state["intent"]
    intent_obj = Intent(**intent_dict)
    store = deps.get_store()
    made = {TOOL_TABLE[t].produces for t in done if TOOL_TABLE.get(t)}
    # The image "it" would mean (this thread's, the session's, else the newest): the same rule image_to_3d applies.
    working = None if state.get("image") or "image" in made else working_image(store, deps.get_session(), cfg.user_id, state)[0]
    has_image = bool(state.get("image")) or "image" in made or working is not None
    has_memory = has_image or store.latest(cfg.user_id) is not None
    kinds = {k for k, asset in (state.get("assets") or {}).items() if asset} | {k for k in made if k not in ("prompt", "recalled")}
    ctx = TurnContext(request=request, done=done, has_prompt="prompt" in made, has_image=has_image, has_memory=has_memory,
                      enhance=cfg.enhance, auto_3d=cfg.auto_3d, kinds=kinds)
    policy, policy_reason = _resolve_policy(cfg.decision_policy)
    exists = {"prompt": state.get("enhanced_prompt"), "image": (state.get("image") or {}).get("creation_id") or (working.id if working else None),
              "model": (state.get("model") or {}).get("creation_id"), "recalled": state.get("recalled") or [], "memory": has_memory,
              "assets": state.get("assets") or {}}
    # The LLM is loaded only if the policy actually asks it (router-only turns never load it).
    decision = choose(ctx, intent_obj, policy, None if policy == "router" else deps.get_llm,
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


def tool_arguments(tool: str, request: str, intent: str, state: AgentState) -> dict[str, Any]:
    """The router's arguments for a tool its plan calls: the tool's own filler (its spec's `arguments`), given the
    request read as an idea (a remix folds the change into the recalled prompt) and as a memory query. A tool
    without a filler is only ever called by the model, with its own arguments."""
    spec = TOOL_TABLE[tool]
    if spec.arguments is None:
        raise ValueError(f"the router has no arguments for {tool}; only the model calls it")
    recalled = state.get("recalled") or []
    parent = recalled[0]["original_prompt"] if intent == "remix" and recalled else None
    m = MODIFICATION.search(request) if intent == "remix" else None
    query = (request[: m.start()] if m else request).strip(" ,") or request
    return spec.arguments(ArgumentRequest(request=request, intent=intent, idea=remix_idea(request, parent), query=query, state=dict(state)))


def review(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    """Pause after enhance_prompt so the user can accept or edit the prompt (LangGraph interrupt)."""
    answer = interrupt({"type": "review_prompt", "idea": state.get("idea"), "enhanced_prompt": state.get("enhanced_prompt"),
                        "question": "Accept this prompt, or send an edited one."})
    edited = answer.get("prompt") if isinstance(answer, dict) else answer
    if isinstance(edited, str) and edited.strip() and edited.strip().lower() not in ("ok", "yes", "accept", "y"):
        return {"enhanced_prompt": edited.strip()[:2000]}
    return {}


def route_after_tools(state: AgentState, config: RunnableConfig) -> str:
    """After a tool that wrote the prompt, the review pause when it is on; else the next decision."""
    last = state["messages"][-1]
    spec = TOOL_TABLE.get(last.name) if isinstance(last, ToolMessage) else None
    if spec is not None and spec.produces == "prompt" and Configuration.from_runnable_config(config).review_prompt:
        return "review"
    return "decide"


def route_after_decide(state: AgentState) -> str:
    last = state["messages"][-1]
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "respond"


def respond(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
    request, done = current_turn(state.get("messages", []))
    steps = state.get("steps", [])[-len(done):] if done else []
    last = (state.get("messages") or [None])[-1]
    # A reply the model decided on (its own words, possibly empty) was put in the history by decide.
    decided = isinstance(last, AIMessage) and not last.tool_calls and bool((last.additional_kwargs or {}).get("decision"))
    words = str(last.content).strip() if decided else ""
    parts: dict[str, Any] = {}
    if (failed := _failed(state.get("messages", []))) is not None:
        text = f"Sorry — {failed.name or 'a step'} failed: {str(failed.content).removeprefix('error: ')}"
    elif done:
        parts = reply_parts(state, done, steps, dependencies(config), cfg_user(config))
        text = "\n".join([line for _, line in parts["lines"]] + ([parts["saved"]] if parts["saved"] else [])
                         + parts["outages"] + [h for _, h in parts["hints"]]) or "Done."
    elif words:
        text = ""
    elif (impossible := _impossible_plan(state)) is not None:
        text = impossible
    else:
        text = chat_reply(request, dependencies(config))
    text = "\n".join(part for part in (words, text) if part)
    # The reply's parts, for a client that shows some of them elsewhere (the studio's card shows the prompt, the
    # image and the model: it shows only the rest), and the hints said, so the next turn does not say them again.
    extra = {"reply": {**parts, "words": words}, "said": [key for key, _ in parts.get("hints", [])]} if parts else {}
    if decided:
        return {"messages": [AIMessage(id=last.id, content=text, additional_kwargs={**last.additional_kwargs, **extra})]}
    return {"messages": [AIMessage(content=text, additional_kwargs=extra)]}


def cfg_user(config: RunnableConfig) -> str:
    return Configuration.from_runnable_config(config).user_id


def _impossible_plan(state: AgentState) -> str | None:
    """The router's plan for this request could not start (3D with no image): its first tool's words."""
    plan = plan_of((state.get("intent") or {}).get("name") or "")
    if not plan:
        return None
    spec = TOOL_TABLE.get(plan[0])
    # Only a missing asset stops a plan before it starts (decision.next_from_plan); other needs are the guard's.
    return spec.impossible if spec is not None and any(n in KINDS for n in spec.needs) else None


PLACEHOLDER_HINT = ("No image model is installed yet, so the pictures are placeholder sketches: "
                    "`atelier models pull sd-turbo` gets real ones.")


def said_before(messages: list[AnyMessage], key: str) -> bool:
    """Whether an earlier reply in this thread already gave the hint `key` (each is said once per thread)."""
    return any(isinstance(m, AIMessage) and key in ((m.additional_kwargs or {}).get("said") or []) for m in messages[:-1])


def reply_parts(state: AgentState, done: list[str], steps: list[dict], deps=None, user_id: str | None = None) -> dict[str, Any]:
    """The reply after tools ran, in parts: each step's line (its spec's `reply`: what was made, by what), where
    the creation is kept, a plain line for each backend that made this user's earlier creations and failed now
    (a real outage), and the hints not yet given in this thread (placeholders: the one command for real pictures).
    A fallback that is the box's normal state (Openfabric never reached, no local model) is not repeated here: the
    step's details, `create --json` and the turn report keep the whole chain with its reasons."""
    lines: list[tuple[str, str]] = []
    for step in steps:
        spec = TOOL_TABLE.get(step.get("tool"))
        if spec is not None and (line := spec.reply(state, step, "")):
            lines.append((spec.name, line))
    made_image = bool(TOOL_TABLE.producing("image") & set(done))
    saved = ""
    if state.get("creation_id") and (TOOL_TABLE.producing("image", "model") & set(done)):
        recalled = state.get("recalled") or []
        parent = next((c for c in recalled if c["id"] == state.get("parent_id")), None) if made_image else None
        remix = f" — a remix of “{parent['original_prompt']}”" if parent else ""
        saved = f"Creation {state['creation_id']} is saved{remix}; ask for it any time."
    hints: list[tuple[str, str]] = []
    sketched = any((step.get("result") or {}).get("is_sketch") for step in steps)
    if sketched and not said_before(state.get("messages", []), "placeholder"):
        hints.append(("placeholder", PLACEHOLDER_HINT))
    return {"lines": lines, "saved": saved, "outages": outages(steps, deps, user_id), "hints": hints}


def outages(steps: list[dict], deps=None, user_id: str | None = None) -> list[str]:
    """'Openfabric text-to-image did not answer this time …' for each backend that failed in this turn although it
    made one of this user's earlier creations: an outage worth saying, unlike a backend that never worked here."""
    failed = [(step, a) for step in steps for a in step.get("attempts") or [] if not a.get("ok")]
    if not failed or deps is None or not user_id:
        return []
    try:
        earlier = deps.get_store().list(user_id, limit=200)
    except Exception as exc:  # the reply goes out without the line rather than not at all
        log.warning("step=reply status=no_outage_check reason=%s", exc)
        return []
    made_by = {(kind, asset.backend) for view in earlier for kind in ("image", "model") if (asset := view.asset(kind)) is not None}
    from tools.backends import backend_label

    out = []
    for step, attempt in failed:
        spec = TOOL_TABLE.get(step.get("tool"))
        kind = "model" if spec is not None and spec.produces == "model" else "image"
        if (kind, attempt.get("backend")) in made_by:
            failed_label = backend_label(attempt["backend"], kind)
            used = backend_label(step["backend"], kind) if step.get("backend") else "the next backend"
            line = (f"{failed_label[:1].upper()}{failed_label[1:]} did not answer this time (it made your earlier "
                    f"{'pictures' if kind == 'image' else '3D models'}), so {used} stood in.")
            if line not in out:
                out.append(line)
    return out


_CANNED = ("I'm Atelier: tell me an idea (\"a glowing dragon on a cliff at sunset\") and I'll write a prompt, make an image and a 3D model. "
           "You can also ask for past creations (\"the castle from last week\") or remix them (\"like before, but with wings\").")


def chat_reply(request: str, deps=None) -> str:
    try:
        text = (deps or dependencies(None)).get_llm().chat([{"role": "system", "content": REPLY_SYSTEM}, {"role": "user", "content": request[:1000]}],
                              max_tokens=60, temperature=0.3, seed=0).strip()
    except Exception as exc:  # a reply is a courtesy; never fail the turn for it
        log.warning("step=reply status=failed reason=%s", exc)
        text = ""
    text = re.sub(r"\s+", " ", text)
    if len(text) < 2 or "SmolLM" in text or "Hugging Face" in text:
        return _CANNED
    return text
