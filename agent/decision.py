"""The decision step: which tool next, with which arguments, or a reply in words.

The model sees the conversation (system prompt, the recent turns, short summaries of tool results and what
exists: prompt, image, model, recalled creations) and the tools as standard tool schemas taken from the
tool table (tools/specs.py: one entry per tool; no second copy anywhere). Its tool call runs with its
own arguments once they validate against the tool's schema; an invalid call gets one repair round with the
validation error, then the router's arguments. A content-only answer is the reply, in the model's words.

The intent router (agent/router.py) guards every model call — it vetoes impossible ones (3D with no image,
the same tool twice in one turn, recall with nothing stored) — and decides where the policy gives it the
decision:
  model  - the model decides every step; a vetoed call ends the step with a reply.
  router - the router decides every step; the model is never asked (nor loaded for deciding).
  hybrid - the router decides; where it is unsure (two intents nearly tied) the model is consulted and its
           call runs unless vetoed.
  auto   - (default) `model` when the model's measured accuracy (`atelier eval decisions`) is within 2 points
           of the router's or better, else `hybrid`. The packaged SmolLM2-135M measures far below the router,
           so with it the router decides (agent/calibration.py).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from models.llm import ChatLLM, LLMError, ToolChatModel
from tools.kinds import KINDS
from tools.specs import TOOL_TABLE, need_words

from .intent_examples import PLANS
from .prompts import DECISION_SYSTEM
from .router import Intent, keeps_words, without_keep_cue

log = logging.getLogger("atelier.decision")

# Below this margin between the best and second intent the router is unsure and consults the model.
UNSURE_MARGIN = 0.04


def agent_tools() -> list:
    """The @tool objects the graph runs (the tool table's): names, descriptions and argument schemas come from them."""
    return TOOL_TABLE.tools()


def tool_names() -> list[str]:
    return TOOL_TABLE.names()


def validate_call(name: str, args: Any) -> tuple[dict | None, str | None]:
    """The model's arguments checked against the tool's own schema: (clean arguments, None) or (None, why)."""
    from pydantic import ValidationError

    tools = {t.name: t for t in agent_tools()}
    if name not in tools:
        return None, f"there is no tool named {name!r}; the tools are {', '.join(tools)}"
    if not isinstance(args, dict):
        return None, f"{name} arguments must be a JSON object, not {str(args)[:80]!r}"
    schema = tools[name].tool_call_schema
    try:
        clean = schema.model_validate(args).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
        return None, f"invalid arguments for {name}: {problems}"
    empty = [k for k, v in clean.items() if isinstance(v, str) and not v.strip()]
    if empty:
        return None, f"invalid arguments for {name}: {', '.join(empty)} must not be empty"
    return clean, None


@dataclass
class TurnContext:
    request: str
    done: list[str] = field(default_factory=list)  # tools already run for this request, in order
    has_prompt: bool = False
    has_image: bool = False
    has_memory: bool = True  # the user has at least one stored creation
    enhance: bool = True
    auto_3d: bool = True
    keep_words: bool = False  # the user asked for their own words as they are ("use my words"): no enhance_prompt
    kinds: set[str] = field(default_factory=set)  # asset kinds the current creation has besides its image (tools/kinds.py)

    def __post_init__(self):
        # The request's own cue decides it, under every policy; it switches the enhance tools off for this turn.
        self.keep_words = self.keep_words or keeps_words(self.request)
        if self.keep_words:
            self.enhance = False

    def has(self, need: str) -> bool:
        """Whether a tool's need (tools/specs.py NEEDS, or an asset kind) is met now."""
        fixed = {"image": self.has_image, "memory": self.has_memory, "request": bool(self.request.strip())}
        return fixed[need] if need in fixed else need in self.kinds

    def produced(self, kind: str) -> None:
        """A tool producing `kind` ran: what it made exists now."""
        self.has_prompt = self.has_prompt or kind == "prompt"
        self.has_image = self.has_image or kind == "image"
        self.has_memory = self.has_memory or kind in KINDS
        if kind in KINDS:
            self.kinds.add(kind)


@dataclass
class Decision:
    tool: str | None  # None = reply
    source: str  # who decided: model | router | guard (a vetoed model call)
    reason: str = ""
    args: dict | None = None  # the model's validated arguments; None = the router's arguments are used
    content: str | None = None  # the model's (or the guard's) words when the step is a reply
    model_tool: str | None = None  # what the model asked for, when it was asked
    asked_model: bool = False
    call_id: str | None = None


def plan_of(intent_name: str) -> list[str]:
    """The tools an intent plans: the router's own intents (intent_examples.PLANS), else the plan of the tool
    whose cue words named it (its spec's `plan`; the router names such an intent after the tool)."""
    if intent_name in PLANS:
        return list(PLANS[intent_name])
    spec = TOOL_TABLE.get(intent_name)
    return list(spec.tool_plan) if spec is not None else []


def plan_for(intent_name: str, ctx: TurnContext) -> list[str]:
    """The intent's plan (intent_examples.PLANS) without the tools the settings switch off: a switched-off tool
    stays only where the request asks for it by name (the enhance intent), and the 3D step of a new creation
    only with automatic 3D on."""
    plan = plan_of(intent_name)
    switches = {"enhance": ctx.enhance}
    plan = [t for t in plan if switches.get(TOOL_TABLE[t].switch or "", True) or (intent_name == "enhance" and not ctx.keep_words)]
    if not ctx.auto_3d and intent_name in ("create", "remix"):
        plan = [t for t in plan if t not in TOOL_TABLE.producing("model")]
    return plan


def next_from_plan(plan: list[str], ctx: TurnContext) -> str | None:
    remaining = list(ctx.done)
    for tool in plan:
        if tool in remaining:
            remaining.remove(tool)
            continue
        for need in TOOL_TABLE[tool].needs:  # an asset it works on that neither exists nor is made by the plan
            if need in KINDS and not ctx.has(need) and not TOOL_TABLE.producing(need) & set(plan):
                return None  # nothing to work on: say so instead (respond uses the tool's `impossible` words)
        return tool
    return None


def veto(tool: str | None, ctx: TurnContext) -> str | None:
    """The router's guard: why a call cannot run now (from the tool's spec: what it needs, its switch), or None."""
    if tool is None:
        return None
    spec = TOOL_TABLE.get(tool)
    if spec is None:
        return f"there is no tool named {tool!r}"
    if tool in ctx.done:
        return f"{tool} already ran for this request"
    for need in spec.needs:
        if not ctx.has(need):
            return f"{tool} needs {need_words(need)} and there is none"
    if spec.switch and not getattr(ctx, spec.switch, True):
        if spec.switch == "enhance" and ctx.keep_words:
            return f"{tool} is skipped: the user asked to keep their own words"
        return f"{tool} is switched off in the settings"
    return None


def plausible(tool: str | None, ctx: TurnContext) -> bool:
    return veto(tool, ctx) is None


# -- what the model sees ---------------------------------------------------------------------------------
def summarize_tool_result(name: str, content: str, status: str = "success") -> str:
    """A tool's JSON result in one short line (the model needs what happened, not every path and score)."""
    if status == "error":
        return str(content)[:200]
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        return str(content)[:200]
    if not isinstance(data, dict):
        return str(content)[:200]
    if data.get("error"):
        return f"error: {data['error']}"[:200]
    spec = TOOL_TABLE.get(name)
    return spec.summarize(data)[:600] if spec is not None else json.dumps(data)[:200]


def exists_lines(exists: dict) -> str:
    lines = []
    if exists.get("prompt"):
        lines.append(f"- prompt: {exists['prompt']}")
    if exists.get("image"):
        lines.append(f"- image: creation {exists['image']}")
    if exists.get("model"):
        lines.append(f"- 3D model: creation {exists['model']}")
    for kind, asset in (exists.get("assets") or {}).items():  # the kinds tools added (image and model are said above)
        if kind not in ("image", "model") and asset and (known := KINDS.get(kind)) is not None:
            lines.append(f"- {known.words}: creation {asset.get('creation_id')}")
    for c in (exists.get("recalled") or [])[:3]:
        lines.append(f"- recalled: {c.get('original_prompt')!r} (creation {c.get('id')}, {str(c.get('created_at'))[:10]})")
    if not exists.get("memory", True):
        lines.append("- memory: empty (nothing was made before)")
    return "\n".join(lines) or "- nothing yet"


def model_messages(history: list[AnyMessage], exists: dict, ctx: TurnContext, max_turns: int = 4) -> list[BaseMessage]:
    """System prompt + the last few turns, tool results summarised, + what exists now."""
    settings = []
    if ctx.keep_words:
        settings += [f"the user asked to keep their own words: do not call {s.name}; send their words as the prompt"
                     for s in TOOL_TABLE.specs() if s.switch == "enhance"]
    elif not ctx.enhance:
        settings += [f"prompt enhancement is off: do not call {s.name}" for s in TOOL_TABLE.specs() if s.switch == "enhance"]
    if not ctx.auto_3d:
        settings.append("automatic 3D is off: make a 3D model only when asked")
    system = DECISION_SYSTEM + "\n\nWhat exists now:\n" + exists_lines(exists)
    if settings:
        system += "\nSettings: " + "; ".join(settings) + "."
    starts = [i for i, m in enumerate(history) if isinstance(m, HumanMessage)]
    recent = history[starts[-max_turns]:] if len(starts) >= max_turns else list(history)
    out: list[BaseMessage] = [SystemMessage(system)]
    for m in recent:
        if isinstance(m, HumanMessage):
            text = m.content if isinstance(m.content, str) else " ".join(p.get("text", "") for p in m.content if isinstance(p, dict))
            out.append(HumanMessage(str(text)[:600]))
        elif isinstance(m, AIMessage) and m.tool_calls:
            out.append(AIMessage(content="", tool_calls=[{"name": c["name"], "args": c["args"], "id": c["id"]} for c in m.tool_calls]))
        elif isinstance(m, AIMessage):
            out.append(AIMessage(content=str(m.content)[:300]))
        elif isinstance(m, ToolMessage):
            out.append(ToolMessage(summarize_tool_result(m.name or "", m.content, m.status), tool_call_id=m.tool_call_id, name=m.name))
    return out


# -- asking the model -----------------------------------------------------------------------------------
@dataclass
class ModelAnswer:
    tool: str | None  # None = answered in words
    args: dict | None = None  # validated; None with a tool = arguments failed twice
    content: str = ""
    call_id: str | None = None
    repaired: bool = False
    error: str | None = None  # the validation error that was left after the repair round


def _first_call(message: AIMessage) -> tuple[str, Any, str, str | None] | None:
    if message.tool_calls:
        c = message.tool_calls[0]
        return c["name"], c["args"], c.get("id") or "call_model", None
    if message.invalid_tool_calls:
        c = message.invalid_tool_calls[0]
        return c.get("name") or "", c.get("args"), c.get("id") or "call_model", c.get("error") or "arguments are not valid JSON"
    return None


def ask_model(llm: ChatLLM, messages: list[BaseMessage]) -> ModelAnswer:
    """One model turn over the conversation with the tools bound; one repair round for an invalid call."""
    bound = ToolChatModel(llm=llm).bind_tools(agent_tools())
    answer = bound.invoke(messages)
    first_error = None
    for attempt in range(2):
        call = _first_call(answer)
        if call is None:
            return ModelAnswer(None, content=str(answer.content or "").strip(), repaired=attempt > 0)
        name, raw_args, call_id, parse_error = call
        args, error = (None, f"invalid arguments for {name}: {parse_error}") if parse_error else validate_call(name, raw_args)
        if error is None:
            return ModelAnswer(name, args, call_id=call_id, repaired=attempt > 0)
        log.info("step=decide source=model status=invalid_call attempt=%d reason=%s", attempt + 1, error)
        first_error = first_error or error
        if attempt == 0:  # the repair round: the model sees its call and the validation error
            bad = AIMessage(content="", tool_calls=[{"name": name, "args": raw_args if isinstance(raw_args, dict) else {}, "id": call_id}])
            fix = ToolMessage(f"error: {error}. Call a tool again with valid arguments, or answer in words.", tool_call_id=call_id, name=name)
            answer = bound.invoke([*messages, bad, fix])
    known = name if name in tool_names() else None
    return ModelAnswer(known, None, call_id=call_id, repaired=True, error=error or first_error)


def decide(ctx: TurnContext, intent: Intent, policy: str, llm: ChatLLM | Callable[[], ChatLLM] | None,
           messages: list[BaseMessage] | Callable[[], list[BaseMessage]] | None = None) -> Decision:
    """One step. `policy` is model | router | hybrid (resolve `auto` first, agent/calibration.py).
    `llm` and `messages` may be callables so the model is loaded only when it is asked."""
    router_tool = next_from_plan(plan_for(intent.name, ctx), ctx)
    router_reason = f"intent={intent.name} via={intent.via} margin={intent.margin:.3f}"
    if policy == "router" or llm is None:
        return Decision(router_tool, "router", router_reason)
    unsure = intent.via == "knn" and intent.margin < UNSURE_MARGIN and not ctx.done
    if policy == "hybrid" and not unsure:
        # Only an unsure router consults the model, so asking it now would change nothing.
        return Decision(router_tool, "router", router_reason)
    model = llm() if callable(llm) and not hasattr(llm, "chat") else llm
    convo = messages() if callable(messages) else messages
    if convo is None:
        convo = model_messages([HumanMessage(ctx.request)], {"image": "latest" if ctx.has_image else None, "memory": ctx.has_memory}, ctx)
    try:
        answer = ask_model(model, convo)
    except (LLMError, ValueError) as exc:
        log.warning("step=decide source=model status=unusable reason=%s", exc)
        if policy == "model":
            return Decision(None, "model", f"model answer unusable: {exc}", asked_model=True)
        return Decision(router_tool, "router", f"model answer unusable: {exc}; {router_reason}", asked_model=True)
    base = {"model_tool": answer.tool, "asked_model": True}
    if answer.tool is None and answer.error:
        if policy == "model":
            return Decision(None, "model", f"model call unusable after the repair round: {answer.error}", **base)
        return Decision(router_tool, "router", f"model call unusable after the repair round ({answer.error}); {router_reason}", **base)
    if answer.tool is None:
        if policy == "model" or answer.content:
            return Decision(None, "model", "model answered in words", content=answer.content or None, **base)
        return Decision(router_tool, "router", f"model gave an empty answer; {router_reason}", **base)
    if answer.args is None and answer.error and policy != "model" and answer.tool != router_tool:
        return Decision(router_tool, "router", f"model call invalid after repair ({answer.error}); {router_reason}", **base)
    if (why := veto(answer.tool, ctx)) is not None:
        spec = TOOL_TABLE.get(answer.tool)
        switched_off = spec is not None and spec.switch and not getattr(ctx, spec.switch, True)
        if switched_off and router_tool is not None and answer.tool not in ctx.done:
            # A switched-off step (enhancement, when the user keeps their words or the settings say so) is skipped,
            # not the request: the router's next step runs with the router's arguments (the user's own words).
            return Decision(router_tool, "guard", f"overrode the model's {answer.tool}: {why}; {router_reason}", **base)
        if policy == "model":
            spec = TOOL_TABLE.get(answer.tool)
            words = spec.impossible if spec is not None and not ctx.done and answer.tool not in ctx.done else None
            return Decision(None, "guard", f"vetoed {answer.tool}: {why}", content=words, **base)
        return Decision(router_tool, "router", f"vetoed model's {answer.tool}: {why}; {router_reason}", **base)
    reason = "model call" + (" after a repair round" if answer.repaired else "")
    if ctx.keep_words and answer.tool in TOOL_TABLE.producing("image") and answer.args is not None:
        # The user's words are the prompt: the model's rewrite of them is not sent (the router's arguments are).
        return Decision(answer.tool, "model", f"{reason}; the user keeps their words, so their words are the prompt",
                        call_id=answer.call_id, **base)
    if answer.args is None:
        reason = f"model chose {answer.tool}; its arguments were invalid after the repair round ({answer.error}), router's arguments used"
    return Decision(answer.tool, "model", reason, args=answer.args, call_id=answer.call_id, **base)


# -- arguments the router fills in ------------------------------------------------------------------------
_LEAD_IN = re.compile(
    r"^\s*(?:(?:hey|hi|ok|okay|please|so|now)[,!]?\s+)*(?:(?:can|could|would|will) you\s+)?(?:please\s+)?"
    r"(?:(?:make|create|generate|draw|paint|render|design|build|sculpt|give|show|produce)(?: me| us)?|i(?:'d| would)? (?:like|want|need)|let'?s (?:make|create|do))\s+",
    re.I,
)
MODIFICATION = re.compile(r"\b(?:but|except|only|and add|add|with)\b\s*(.+)$", re.I)


def idea_from_request(request: str) -> str:
    request = without_keep_cue(request)
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


# -- decisions without running the tools (the accuracy benchmark) ----------------------------------------------

def simulate_plan(request: str, has_image: bool, intent: Intent, policy: str, llm: ChatLLM | Callable[[], ChatLLM] | None,
                  enhance: bool = True, auto_3d: bool = True, max_steps: int = 6, calls: list | None = None) -> list[str]:
    """The tools a turn would call, deciding step by step as the graph does, the model seeing the same kind
    of conversation (its own calls and short simulated results) but without running the tools."""
    ctx = TurnContext(request=request, has_image=has_image, enhance=enhance, auto_3d=auto_3d)
    history: list[AnyMessage] = [HumanMessage(request)]
    exists: dict = {"image": "c0000" if has_image else None}
    for step in range(max_steps):
        decision = decide(ctx, intent, policy, llm, lambda history=history: model_messages(history, exists, ctx))
        if calls is not None:
            calls.append({"tool": decision.tool, "source": decision.source, "args": decision.args, "reason": decision.reason})
        if decision.tool is None:
            break
        call_id = decision.call_id or f"call_sim{step}"
        spec = TOOL_TABLE[decision.tool]
        result = spec.simulate(decision.args or {})
        history += [AIMessage(content="", tool_calls=[{"name": decision.tool, "args": decision.args or {}, "id": call_id}]),
                    ToolMessage(json.dumps(result), tool_call_id=call_id, name=decision.tool)]
        ctx.done.append(decision.tool)
        if spec.produces:
            ctx.produced(spec.produces)
        if spec.produces == "prompt":
            exists["prompt"] = result.get("enhanced_prompt")
        elif spec.produces in ("image", "model"):
            exists[spec.produces] = result.get("creation_id") or "c0001"
        elif spec.produces in KINDS:
            exists.setdefault("assets", {})[spec.produces] = {"creation_id": result.get("creation_id") or "c0001"}
    return ctx.done
