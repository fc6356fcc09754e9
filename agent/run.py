"""One run loop for a turn, used by the CLI, the studio, the benchmarks and the tests.

    run_turn(graph, text, config, on_event=..., review=...)     sync: streams, pauses, resumes, returns the result
    TurnStream(graph, text, config, review=async_or_sync_fn)     async iterator of the same events (the studio)
    turn_report(result, config)                                   the CLI's JSON report of a result

`graph` is anything with LangGraph's Pregel protocol: the compiled in-process graph, or a
langgraph.pregel.remote.RemoteGraph talking to `atelier serve` (the studio's client mode). Both stream
("updates" | "custom", chunk) pairs; the loop normalises what differs between them (a remote interrupt is a
dict, remote messages are dicts) so every caller sees message objects and the interrupt's value.

A turn's result: {"state": the thread's values after the turn, "steps": its step_end events, "seconds",
"paused": the review payload when the reviewer gave no answer (the turn is left paused), else None}.
The reply is the graph's own final message (`reply(state)`); nothing here writes another.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("atelier.agent")

ACCEPT = {"action": "accept"}
_DONE = object()


def as_messages(messages: list | None) -> list:
    """Message objects from either side of the wire (a RemoteGraph hands back dicts with a "type")."""
    if not messages:
        return []
    if all(not isinstance(m, dict) for m in messages):
        return list(messages)
    from langchain_core.messages import convert_to_messages

    return convert_to_messages(messages)


def interrupt_value(chunk: Any) -> Any | None:
    """The review payload of an "updates" chunk that paused the graph, else None."""
    if not isinstance(chunk, dict) or "__interrupt__" not in chunk:
        return None
    first = (chunk["__interrupt__"] or [None])[0]
    return first.get("value") if isinstance(first, dict) else getattr(first, "value", None)


def _normalised_update(chunk: dict) -> dict:
    out = {}
    for node, update in chunk.items():
        if isinstance(update, dict) and update.get("messages"):
            update = {**update, "messages": as_messages(update["messages"])}
        out[node] = update
    return out


def reply(state: dict) -> str:
    """The turn's reply: the graph's final message (agent/nodes.respond wrote it)."""
    messages = as_messages(state.get("messages"))
    return str(messages[-1].content) if messages else ""


def run_turn(graph, text: str | None, config: dict, on_event: Callable[[dict], Any] | None = None,
             review: Callable[[Any], Any] | None = None, on_update: Callable[[dict], Any] | None = None,
             payload: Any = None) -> dict[str, Any]:
    """Run one request through the graph, handing each custom event to on_event and each update to on_update.

    At the review interrupt `review(payload)` is asked (None = accept unseen, as the CLI without --review);
    its answer resumes the graph with Command(resume=answer). A reviewer that answers None leaves the turn
    paused: the result says so in "paused". `payload` replaces the text's message (e.g. a Command to resume).
    """
    from langchain_core.messages import HumanMessage
    from langgraph.types import Command

    started = time.perf_counter()
    steps: list[dict] = []
    current: Any = payload if payload is not None else {"messages": [HumanMessage(text or "")]}
    paused = None
    while True:
        interrupted = None
        for part in graph.stream(current, config, stream_mode=["updates", "custom"]):
            mode, chunk = part[0], part[1]  # a (mode, chunk) pair; RemoteGraph's StreamPart has more fields after them
            if mode == "custom" and isinstance(chunk, dict):
                if chunk.get("event") == "step_end":
                    steps.append(chunk)
                if on_event:
                    on_event(chunk)
            elif mode == "updates" and isinstance(chunk, dict):
                value = interrupt_value(chunk)
                if value is not None:
                    interrupted = value
                elif on_update:
                    on_update(_normalised_update(chunk))
        if interrupted is None:
            break
        answer = review(interrupted) if review else ACCEPT
        if answer is None:
            paused = interrupted
            break
        current = Command(resume=answer)
    state = dict(graph.get_state(config).values or {})
    state["messages"] = as_messages(state.get("messages"))
    seconds = round(time.perf_counter() - started, 3)
    log.info("step=turn thread=%s tools=%s paused=%s seconds=%.2f", (config.get("configurable") or {}).get("thread_id"),
             ",".join(s.get("tool", "?") for s in steps) or "-", paused is not None, seconds)
    return {"state": state, "steps": steps, "seconds": seconds, "paused": paused}


class TurnStream:
    """The same loop for an event loop: `async for mode, chunk in TurnStream(...)`, then `.result`.

    The graph's stream is synchronous (llama.cpp, SQLite; RemoteGraph's sync client), so run_turn runs in a
    thread of its own and hands each ("custom" | "updates", chunk) to the loop through a queue; the review
    callback (a coroutine function or a plain one) is awaited by the iterating task while the thread waits.
    An exception in the graph is raised from the iteration.
    """

    def __init__(self, graph, text: str | None, config: dict, review: Callable[[Any], Any] | None = None,
                 payload: Any = None):
        self.graph, self.text, self.config, self.review, self.payload = graph, text, config, review, payload
        self.result: dict[str, Any] | None = None

    def __aiter__(self):
        return self._iterate()

    async def _ask(self, value: Any) -> Any:
        answer = self.review(value)
        return await answer if inspect.isawaitable(answer) else answer

    async def _iterate(self):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def review(value: Any) -> Any:
            if self.review is None:
                return ACCEPT
            # Asked by the iterating task itself (below), so the reviewer runs in the caller's context (Chainlit's
            # session lives in context variables); this thread waits for the answer.
            answer: concurrent.futures.Future = concurrent.futures.Future()
            put(("__review__", value, answer))
            return answer.result()

        def work() -> None:
            try:
                self.result = run_turn(self.graph, self.text, self.config, on_event=lambda e: put(("custom", e)),
                                       on_update=lambda u: put(("updates", u)), review=review, payload=self.payload)
            except BaseException as exc:  # raised on the event loop's side, where the caller handles it
                put(("__error__", exc))
            finally:
                put(_DONE)

        threading.Thread(target=work, name="atelier-turn", daemon=True).start()
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if item[0] == "__error__":
                raise item[1]
            if item[0] == "__review__":
                _, value, answer = item
                try:
                    answer.set_result(await self._ask(value))
                except BaseException as exc:  # the reviewer failed or was cancelled: the turn stops with it
                    answer.set_exception(exc)
                    raise
                continue
            yield item


def turn_report(result: dict, config: dict) -> dict[str, Any]:
    """The CLI's JSON report of one turn (what `atelier create --json` prints)."""
    from tools.specs import TOOL_TABLE

    state, steps = result["state"], result["steps"]
    done = [s["tool"] for s in steps]
    # the creation this turn made, modelled or recalled (a turn that only chatted reports none)
    image = state.get("image") if TOOL_TABLE.producing("image", "model", "recalled") & set(done) else None
    model = state.get("model") if image else None
    stage_seconds: dict[str, float] = {}
    for s in steps:
        stage_seconds[s["tool"]] = round(stage_seconds.get(s["tool"], 0) + s["seconds"], 3)
    stage_seconds["total"] = result["seconds"]
    return {
        "creation_id": state.get("creation_id") if done else None,
        "thread_id": config["configurable"]["thread_id"],
        "user_id": config["configurable"]["user_id"],
        "original_prompt": state.get("idea"),
        "enhanced_prompt": state.get("enhanced_prompt"),
        "image": image and image["path"],
        "model": model and model["path"],
        "backends": {"image": image and image["backend"], "model": model and model["backend"]},
        # every asset of the creation this turn worked on, by kind (tools/kinds.py): image, model and any a tool added
        "assets": {kind: asset["path"] for kind, asset in (state.get("assets") or {}).items() if asset}
        if TOOL_TABLE.producing(*TOOL_TABLE.asset_kinds(), "recalled") & set(done) else {},
        "tool_calls": done,
        "fallbacks": [{"tool": s["tool"], **a} for s in steps for a in s.get("attempts", []) if not a["ok"]],
        "recalled": [c["id"] for c in state.get("recalled") or []] if TOOL_TABLE.producing("recalled") & set(done) else [],
        "notes": [s["note"] for s in steps if s.get("note")],
        "seconds": stage_seconds,
        "reply": reply(state),
        "decisions": turn_decisions(state),
    }


def turn_decisions(state: dict) -> list[dict[str, Any]]:
    """Who decided each step of the latest turn (model, router, or guard = a vetoed model call)."""
    from langchain_core.messages import AIMessage, HumanMessage

    out: list[dict[str, Any]] = []
    for message in reversed(as_messages(state.get("messages"))):
        if isinstance(message, HumanMessage):
            break
        kwargs = getattr(message, "additional_kwargs", None) or {}
        if isinstance(message, AIMessage) and kwargs.get("decision"):
            tool = message.tool_calls[0]["name"] if message.tool_calls else None
            out.append({"tool": tool, "decided_by": kwargs["decision"], "policy": kwargs.get("policy"),
                        "arguments_from": kwargs.get("arguments_from"), "reason": kwargs.get("decision_reason")})
    return list(reversed(out))
