"""One request through the agent graph, shown live: a Chainlit Step per tool (which tool, who chose it,
progress, backend, seconds), the creation card as soon as the image exists, the 3D model when it is ready,
the review pause when it is on, and a kind, specific reply at the end — never a stack trace.

The graph is synchronous (LangGraph + llama.cpp); it runs in a worker thread and its stream is handed to
the event loop through a queue.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

import chainlit as cl
from chainlit.utils import utc_now

from . import history, views

log = logging.getLogger("atelier.ui")

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atelier-turn")
_graph = None
_graph_lock = threading.Lock()
_DONE = object()


def get_graph():
    """The compiled graph with the SQLite (or Postgres) checkpointer: threads resume after a restart."""
    global _graph
    with _graph_lock:
        if _graph is None:
            from agent.graph import build_graph
            from memory.session import checkpointer

            _graph = build_graph(checkpointer=checkpointer())
    return _graph


async def in_thread(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(_executor, lambda: fn(*args, **kwargs))


async def stream_graph(graph, payload, config) -> AsyncIterator[tuple[str, Any]]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def work() -> None:
        try:
            for item in graph.stream(payload, config, stream_mode=["updates", "custom"]):
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # handed to the event loop, shown kindly there
            loop.call_soon_threadsafe(queue.put_nowait, ("__error__", exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    loop.run_in_executor(_executor, work)
    while True:
        item = await queue.get()
        if item is _DONE:
            return
        yield item


_PATH_TAIL = re.compile(r":\s*/\S+\.(png|jpe?g|webp|glb|gltf|obj|ply)\b")


class Turn:
    def __init__(self, user: str, thread_id: str, configurable: dict[str, Any], author: str = "Atelier",
                 parent_id: str | None = None):
        self.user = user
        # Steps go where Chainlit puts this run's messages (the on_message run), so they show in order, live.
        current = cl.context.current_step
        self.parent_id = parent_id or (current.id if current else None)
        self.thread_id = thread_id
        self.config = {"configurable": {**configurable, "user_id": user, "thread_id": thread_id}}
        self.author = author
        self.steps: dict[str, cl.Step] = {}
        self.step_text: dict[str, list[str]] = {}
        self.last_update: dict[str, float] = {}
        self.chosen: dict[str, str] = {}  # tool -> "router (intent create)" ...
        self.intent: dict | None = None
        self.done: list[str] = []
        self.failed: tuple[str, str] | None = None
        self.cards: dict[str, tuple[cl.Message, cl.CustomElement]] = {}  # creation id -> card
        self.notes: dict[str, list[str]] = {}
        self.made: str | None = None  # creation made by this turn
        self.modelled: str | None = None  # creation given a 3D model by this turn
        self.recalled: list[str] = []
        self.started = time.perf_counter()

    # -- running ------------------------------------------------------------------------------------
    async def run(self, text: str) -> None:
        from langchain_core.messages import HumanMessage
        from langgraph.types import Command

        graph = await in_thread(get_graph)
        payload: Any = {"messages": [HumanMessage(text)]}
        try:
            while True:
                interrupted = None
                async for mode, chunk in stream_graph(graph, payload, self.config):
                    if mode == "__error__":
                        raise chunk
                    if mode == "custom" and isinstance(chunk, dict):
                        await self.on_event(chunk)
                    elif mode == "updates" and isinstance(chunk, dict):
                        if "__interrupt__" in chunk:
                            interrupted = chunk["__interrupt__"][0].value
                        else:
                            self.on_update(chunk)
                if interrupted is None:
                    break
                answer = await self.ask_review(interrupted)
                if answer is None:  # no answer in time: leave the request paused (a new message starts afresh)
                    await self.close_open_steps("")
                    await cl.Message(content="The prompt is still waiting for your review, so no image was made. "
                                             "Send a new request whenever you like.", author=self.author).send()
                    return
                payload = Command(resume=answer)
            state = (await in_thread(graph.get_state, self.config)).values
        except Exception as exc:
            log.warning("step=turn status=failed thread=%s user=%s reason=%s", self.thread_id, self.user, exc, exc_info=True)
            await self.close_open_steps("stopped: something went wrong")
            await self.settle_cards()
            await cl.Message(content=views.unexpected_error(exc), author=self.author).send()
            return
        await self.close_open_steps("")
        await self.finish(state)
        log.info("step=turn thread=%s user=%s tools=%s seconds=%.2f", self.thread_id, self.user, ",".join(self.done) or "-",
                 time.perf_counter() - self.started)

    def on_update(self, chunk: dict) -> None:
        for node, update in chunk.items():
            for item in update if isinstance(update, (list, tuple)) else [update]:
                if not isinstance(item, dict):
                    continue
                if node == "decide":
                    if item.get("intent"):
                        self.intent = item["intent"]
                    for message in item.get("messages") or []:
                        for call in getattr(message, "tool_calls", None) or []:
                            source = (getattr(message, "additional_kwargs", {}) or {}).get("decision", "agent")
                            intent = self.intent or {}
                            how = f" · intent {intent.get('name')} ({intent.get('via')}, {float(intent.get('confidence') or 0):.2f})" if intent else ""
                            self.chosen[call["name"]] = f"{source}{how}"
                for message in item.get("messages") or []:
                    if getattr(message, "type", "") == "tool" and getattr(message, "status", "") == "error":
                        self.failed = (message.name or "", str(message.content))

    # -- live steps ---------------------------------------------------------------------------------
    async def on_event(self, event: dict) -> None:
        kind, tool = event.get("event"), event.get("tool") or "step"
        if kind == "step_start":
            await self.close_step(tool, "")  # a tool runs once per request; be safe anyway
            step = cl.Step(name=tool, type="tool", show_input=False, parent_id=self.parent_id)
            step.start = utc_now()
            head = [f"**chosen by** {self.chosen.get(tool, 'the agent')}"]
            if event.get("input"):
                head.append(f"**input** {str(event['input'])[:500]}")
            self.step_text[tool] = head
            step.output = "\n\n".join(head)
            self.steps[tool] = step
            await step.send()
            if tool == "image_to_3d":
                await self.card_status(event.get("creation_id"), "making3d")
        elif kind == "progress":
            step = self.steps.get(tool)
            line = views.progress_line(event)
            if step is None or not line:
                return
            now = time.perf_counter()
            fraction = event.get("fraction")
            if now - self.last_update.get(tool, 0) < 0.3 and fraction not in (1, 1.0):
                self.step_text[tool].append(line)
                return
            self.last_update[tool] = now
            self.step_text[tool].append(line)
            head, rest = self.step_text[tool][:2], self.step_text[tool][2:]
            step.output = "\n\n".join(head + ["\n".join(f"- {x}" for x in rest[-6:])])
            await step.update()
        elif kind == "step_end":
            self.done.append(tool)
            await self.close_step(tool, views.step_output_end(event), event)
            await self.after_tool(tool, event)

    async def close_step(self, tool: str, text: str, event: dict | None = None) -> None:
        step = self.steps.pop(tool, None)
        if step is None:
            return
        head = self.step_text.pop(tool, [])[:2]
        step.output = "\n\n".join(head + ([text] if text else []))
        result = (event or {}).get("result") or {}
        step.is_error = bool(result.get("error")) or bool(self.failed and self.failed[0] == tool)
        if event is not None:  # "text_to_image · sketch · 0.41 s": readable even when the step is folded
            step.name = views.step_title(tool, event)
        step.end = utc_now()
        await step.update()

    async def close_open_steps(self, text: str) -> None:
        for tool in list(self.steps):
            step = self.steps[tool]
            if self.failed and self.failed[0] == tool:
                step.is_error = True
                text = views.failure_message(*self.failed)
            await self.close_step(tool, text)
            step.is_error = step.is_error or bool(self.failed and self.failed[0] == tool)

    async def after_tool(self, tool: str, event: dict) -> None:
        result = event.get("result") or {}
        cid = result.get("creation_id") or event.get("creation_id")
        if tool == "text_to_image" and cid and not result.get("error"):
            self.made = cid
            self.notes[cid] = views.fallback_notes(tool, event.get("attempts") or [], event.get("backend"))
            # With auto 3D on, the card says the model is on its way until image_to_3d reports back.
            status = "making3d" if self.config["configurable"].get("auto_3d", True) else "image"
            props = await in_thread(history.creation, self.user, cid, self.notes[cid], status)
            if props:
                await self.send_card(cid, props)
        elif tool == "image_to_3d" and cid and not result.get("error"):
            self.modelled = cid
            notes = self.notes.setdefault(cid, []) + views.fallback_notes(tool, event.get("attempts") or [], event.get("backend"))
            self.notes[cid] = notes
            props = await in_thread(history.creation, self.user, cid, notes, None)
            if props:
                if cid in self.cards:
                    msg, element = self.cards[cid]
                    element.props = props
                    await element.update()
                else:
                    await self.send_card(cid, props)
        elif tool == "recall_similar":
            self.recalled = [c.get("creation_id") for c in result.get("creations") or [] if c.get("creation_id")]

    async def send_card(self, cid: str, props: dict) -> None:
        element = cl.CustomElement(name="Creation", props=props, display="inline")
        msg = cl.Message(content="", author=self.author, elements=[element])
        await msg.send()
        self.cards[cid] = (msg, element)

    async def card_status(self, cid: str | None, status: str) -> None:
        if cid and cid in self.cards:
            _, element = self.cards[cid]
            if element.props.get("status") != status:
                element.props = {**element.props, "status": status}
                await element.update()

    # -- human in the loop --------------------------------------------------------------------------
    async def ask_review(self, payload: dict) -> dict | None:
        prompt = str(payload.get("enhanced_prompt") or "")
        element = cl.CustomElement(name="ReviewPrompt", display="inline",
                                   props={"idea": payload.get("idea") or "", "enhanced_prompt": prompt})
        ask = cl.AskElementMessage(content="**Review the prompt** — accept it, or edit it before any image is made.",
                                   element=element, author=self.author, timeout=900)
        answer = await ask.send()
        edited = (answer or {}).get("prompt") if isinstance(answer, dict) else None
        if answer is None or (isinstance(answer, dict) and answer.get("submitted") is False):
            ask.content = "No answer — the request is paused."
            await ask.update()
            return None
        if isinstance(edited, str) and edited.strip() and edited.strip() != prompt.strip():
            ask.content = f"Using your edited prompt:\n\n> {edited.strip()[:2000]}"
            await ask.update()
            return {"prompt": edited.strip()[:2000]}
        else:
            ask.content = f"Prompt accepted:\n\n> {prompt}"
        await ask.update()
        return {"action": "accept"}

    # -- the reply ----------------------------------------------------------------------------------
    async def settle_cards(self) -> None:
        for cid, (_, element) in self.cards.items():  # no model came after all (image-only request, or it failed)
            if element.props.get("status") == "making3d":
                props = await in_thread(history.creation, self.user, cid, self.notes.get(cid), None)
                if props:
                    element.props = props
                    await element.update()

    async def finish(self, state: dict) -> None:
        await self.settle_cards()
        messages = state.get("messages") or []
        reply = str(messages[-1].content) if messages else ""
        if self.failed:
            text = views.failure_message(*self.failed)
        elif self.made:
            text = await in_thread(self.creation_summary, self.made, state)
        elif self.modelled:
            props = await in_thread(history.creation, self.user, self.modelled, None, None)
            text = f"Turned “{props['prompt'] if props else 'the image'}” into a 3D model"
            text += f" with {props['model_backend']}." if props and props.get("model_backend") else "."
            text += "".join(f"\n\n⚠ {n}" for n in self.notes.get(self.modelled, []))
        else:
            text = _PATH_TAIL.sub("", reply).strip() or "Done."
        await cl.Message(content=text, author=self.author).send()
        if self.recalled and not self.made:
            found = await in_thread(history.views_of, self.user, self.recalled)
            if found:
                props = views.history_props(found, title=f"From your memory ({len(found)})", mode="recall")
                await cl.Message(content="", author=self.author,
                                 elements=[cl.CustomElement(name="History", props=props, display="inline")]).send()

    def creation_summary(self, cid: str, state: dict) -> str:
        props = history.creation(self.user, cid)
        if not props:
            return "Done."
        lines = [f"Made **{props['prompt']}**."]
        if props.get("parent"):
            lines[0] = f"Made **{props['prompt']}** — a remix of “{props['parent']['prompt']}”."
        image = f"Image by **{props['image_backend']}**"
        if props.get("is_sketch"):
            image += " (a placeholder sketch — no image model is configured)"
        lines.append(image + (f"; 3D model by **{props['model_backend']}**." if props.get("model_backend") else "."))
        lines += [f"⚠ {n}" for n in self.notes.get(cid, [])]
        lines.append(f"Saved as creation `{cid}` — find it in **/history**, ask for it later, or press **Remix** on the card.")
        return "\n\n".join(lines)
