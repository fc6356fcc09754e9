"""The decision step: which tool next, or reply. Works on any GGUF model.

The LLM answers with JSON constrained by a schema (llama.cpp grammar), so it can always choose "reply"
(no tool) — the thing ChatLlamaCpp.bind_tools cannot do. The intent router then validates it:
  model  - the model alone (invalid or implausible choices become a reply)
  router - the router's plan alone
  hybrid - the router where it is confident; where it is unsure (two intents nearly tied), the model
           decides, and an invalid or implausible model choice falls back to the router. (default)
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from .intent_examples import PLANS
from .llm import ChatLLM, LLMError, parse_json
from .prompts import DECISION_FEWSHOT, DECISION_SYSTEM
from .router import Intent, IntentRouter

log = logging.getLogger("atelier.decision")

TOOL_NAMES = ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"]
DECISION_SCHEMA = {
    "type": "object",
    "properties": {"tool": {"type": "string", "enum": TOOL_NAMES + ["reply"]}, "input": {"type": "string", "maxLength": 80}},
    "required": ["tool", "input"],
}
# Below this margin between the best and second intent the router defers to a valid model choice.
UNSURE_MARGIN = 0.04


@dataclass
class TurnContext:
    request: str
    done: list[str] = field(default_factory=list)  # tools already run for this request, in order
    has_prompt: bool = False
    has_image: bool = False
    enhance: bool = True
    auto_3d: bool = True


@dataclass
class Decision:
    tool: str | None  # None = reply
    source: str  # model | router
    reason: str = ""
    model_tool: str | None = None
    model_input: str | None = None


def plan_for(intent_name: str, ctx: TurnContext) -> list[str]:
    plan = list(PLANS[intent_name])
    if not ctx.enhance and intent_name != "enhance":
        plan = [t for t in plan if t != "enhance_prompt"]
    if not ctx.auto_3d and intent_name in ("create", "remix"):
        plan = [t for t in plan if t != "image_to_3d"]
    return plan


def next_from_plan(plan: list[str], ctx: TurnContext) -> str | None:
    remaining = list(ctx.done)
    for tool in plan:
        if tool in remaining:
            remaining.remove(tool)
            continue
        if tool == "image_to_3d" and not ctx.has_image and "text_to_image" not in plan:
            return None  # nothing to turn into 3D: say so instead
        return tool
    return None


def plausible(tool: str | None, ctx: TurnContext) -> bool:
    if tool is None:
        return True
    if tool in ctx.done:
        return False  # one call of each tool per request is all any plan needs
    if tool == "image_to_3d":
        return ctx.has_image
    if tool == "text_to_image":
        return bool(ctx.request.strip())
    return True


def ask_model(llm: ChatLLM, ctx: TurnContext) -> tuple[str | None, str]:
    messages = [{"role": "system", "content": DECISION_SYSTEM}]
    for user, state_line, answer in DECISION_FEWSHOT:
        messages.append({"role": "user", "content": f"Request: {user}\nState: {state_line}"})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    state_line = f"done this turn: {', '.join(ctx.done) or 'nothing'}; has image: {'yes' if ctx.has_image else 'no'}"
    messages.append({"role": "user", "content": f"Request: {ctx.request[:500]}\nState: {state_line}"})
    answer = parse_json(llm.chat(messages, max_tokens=64, temperature=0.0, json_schema=DECISION_SCHEMA, seed=0))
    tool = answer.get("tool")
    if tool not in TOOL_NAMES + ["reply"]:
        raise LLMError(f"model chose unknown tool {tool!r}")
    return (None if tool == "reply" else tool), str(answer.get("input", ""))


def decide(ctx: TurnContext, intent: Intent, policy: str, llm: ChatLLM | None) -> Decision:
    router_tool = next_from_plan(plan_for(intent.name, ctx), ctx)
    if policy == "router" or llm is None:
        return Decision(router_tool, "router", f"intent={intent.name} via={intent.via}")
    unsure = intent.via == "knn" and intent.margin < UNSURE_MARGIN and not ctx.done
    if policy == "hybrid" and not unsure:
        # Only an unsure router lets the model's choice through, so asking it now would change nothing.
        return Decision(router_tool, "router", f"intent={intent.name} via={intent.via} margin={intent.margin:.3f}")
    try:
        model_tool, model_input = ask_model(llm, ctx)
    except (LLMError, ValueError) as exc:
        log.warning("step=decide source=model status=invalid reason=%s", exc)
        if policy == "model":
            return Decision(None, "model", f"model answer unusable: {exc}")
        return Decision(router_tool, "router", f"model answer unusable: {exc}")
    valid = plausible(model_tool, ctx)
    if policy == "model":
        return Decision(model_tool if valid else None, "model", "" if valid else f"implausible {model_tool}", model_tool, model_input)
    if valid:
        return Decision(model_tool, "model", f"intent={intent.name} margin={intent.margin:.3f}", model_tool, model_input)
    return Decision(router_tool, "router", f"model chose {model_tool or 'reply'} (implausible); intent={intent.name}", model_tool, model_input)


# -- arguments the router fills in (the model's arguments are checked against the same rules) -----------
_LEAD_IN = re.compile(
    r"^\s*(?:(?:hey|hi|ok|okay|please|so|now)[,!]?\s+)*(?:(?:can|could|would|will) you\s+)?(?:please\s+)?"
    r"(?:(?:make|create|generate|draw|paint|render|design|build|sculpt|give|show|produce)(?: me| us)?|i(?:'d| would)? (?:like|want|need)|let'?s (?:make|create|do))\s+",
    re.I,
)
MODIFICATION = re.compile(r"\b(?:but|except|only|and add|add|with)\b\s*(.+)$", re.I)


def idea_from_request(request: str) -> str:
    idea = _LEAD_IN.sub("", request).strip()
    idea = re.sub(r"[\s,.;:]*(?:and )?(?:make|turn) (?:it|a 3d model of it|it into 3d)[\s.!]*$", "", idea, flags=re.I)
    idea = re.sub(r"[\s,]*(?:image only|no 3d( please)?|without a model|only the image)[\s.!]*$", "", idea, flags=re.I)
    idea = re.sub(r"^(?:just |only )?(?:an? )?(?:image|picture|photo|illustration) of\s+", "", idea, flags=re.I)
    return idea.strip(" .!,") or request.strip()


def remix_idea(request: str, parent_idea: str | None) -> str:
    """'like the castle from last week but at night' + 'a castle on a hill' -> 'a castle on a hill, at night'."""
    if not parent_idea:
        return idea_from_request(request)
    m = MODIFICATION.search(request)
    change = m.group(1).strip(" .!") if m else ""
    return f"{parent_idea}, {change}" if change else parent_idea


def simulate_plan(request: str, has_image: bool, intent: Intent, policy: str, llm: ChatLLM | None,
                  enhance: bool = True, auto_3d: bool = True, max_steps: int = 6) -> list[str]:
    """The tools a turn would call, deciding step by step as the graph does but without running them
    (for measuring decision accuracy)."""
    ctx = TurnContext(request=request, has_image=has_image, enhance=enhance, auto_3d=auto_3d)
    for _ in range(max_steps):
        tool = decide(ctx, intent, policy, llm).tool
        if tool is None:
            break
        ctx.done.append(tool)
        ctx.has_prompt = ctx.has_prompt or tool == "enhance_prompt"
        ctx.has_image = ctx.has_image or tool == "text_to_image"
    return ctx.done
