"""One request through the agent graph, shown live: a Chainlit Step per tool (which tool, who chose it,
progress, backend, seconds), the creation card as soon as the image exists, the 3D model when it is ready,
the review pause when it is on, and the graph's reply at the end — never a stack trace.

The loop itself (stream, interrupt, resume) is agent/run.py's, shared with the CLI; this module only shows
its events. The graph is the in-process one by default, or — with ATELIER_API_URL set (client mode) — a
langgraph RemoteGraph on `atelier serve`: the thread, its checkpoints and the creations then live on the
server, the studio's thread id is the server's thread id, and cards and assets are read through its API.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import chainlit as cl
from chainlit.utils import utc_now

from agent.run import TurnStream, reply as graph_reply
from ui.settings import get_settings

from . import history, views

log = logging.getLogger("atelier.ui")

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atelier-turn")
_graph = None
_graph_lock = threading.Lock()
_remote: dict[str, Any] = {}  # user -> RemoteGraph (its clients carry the user's identity header)
USER_HEADER = "X-Atelier-User"
ASSISTANT = "atelier"  # the graph's name in langgraph.json


def api_url() -> str | None:
    url = (get_settings().api_url or "").strip().rstrip("/")
    return url or None


def get_graph(user: str | None = None):
    """The graph a turn runs on: in-process (SQLite / Postgres checkpointer: threads resume after a restart),
    or in client mode the user's RemoteGraph on the API server."""
    global _graph
    if (url := api_url()) is not None:
        with _graph_lock:
            if user not in _remote:
                from langgraph.pregel.remote import RemoteGraph

                _remote[user] = RemoteGraph(ASSISTANT, url=url, headers=identity_headers(user))
            return _remote[user]
    with _graph_lock:
        if _graph is None:
            from agent.graph import build_graph
            from memory.session import checkpointer

            _graph = build_graph(checkpointer=checkpointer())
    return _graph


async def in_thread(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(_executor, lambda: fn(*args, **kwargs))


# -- client mode: the API server's threads and creations ------------------------------------------------
def identity_headers(user: str | None) -> dict[str, str]:
    return {USER_HEADER: user} if user else {}


def api_client(user: str, timeout: float = 60):
    import httpx

    return httpx.Client(base_url=api_url(), headers=identity_headers(user), timeout=timeout)


def ensure_remote_thread(user: str, thread_id: str) -> dict:
    """The server thread this Chainlit thread runs on: the same id, created through the API on first use (the
    server stamps its owner from the identity header; an existing one of the user's is kept as it is)."""
    graph = get_graph(user)
    return graph.sync_client.threads.create(thread_id=thread_id, if_exists="do_nothing",
                                            metadata={"user_id": user, "source": "studio"})


class PictureRefused(ValueError):
    """A picture the studio could not take; the message says why (memory/upload.py's rules)."""


def upload_picture(user: str, data: bytes, filename: str | None, description: str | None, thread_id: str) -> tuple[str, dict]:
    """Keep a picture the user dropped in the chat as a creation of theirs: (creation id, its image in the graph's
    state form). In-process: memory/upload.py on the local store; client mode: POST /creations on the API server."""
    if api_url() is None:
        from agent.uploads import image_of
        from memory.store import get_store
        from memory.upload import store_upload
        from memory.validation import InvalidInput

        try:
            view = store_upload(get_store(), user, data, filename=filename, description=description, thread_id=thread_id)
        except InvalidInput as exc:
            raise PictureRefused(str(exc)) from None
        return view.id, image_of(view)
    params = {k: v for k, v in (("filename", filename), ("description", description)) if v}
    with api_client(user, timeout=120) as client:
        response = client.post("/creations", params=params, content=data, headers={"content-type": "application/octet-stream"})
    if response.status_code in (413, 415, 422):
        raise PictureRefused(_detail(response))
    response.raise_for_status()
    return response.json()["id"], {"creation_id": response.json()["id"]}


def _detail(response) -> str:
    try:
        return str(response.json().get("detail") or response.text)
    except ValueError:
        return response.text[:300]


def api_asset_url(sha256: str) -> str:
    """The studio's proxy for the server's GET /assets/{sha256} (ui/app.py), fetched with the user's identity."""
    return f"/atelier/api-asset/{sha256}"


def _view(data: dict):
    """A memory.store.CreationView from the API's JSON of a creation (no server paths: assets go by sha256)."""
    from memory.store import AssetView, CreationView

    assets = [AssetView(kind=a["kind"], path="", rel_path=a.get("rel_path", ""), sha256=a["sha256"], mime=a["mime"],
                        backend=a["backend"], bytes=a.get("bytes", 0), meta=a.get("meta") or {}) for a in data["assets"]]
    return CreationView(id=data["id"], user_id=data["user_id"], thread_id=data.get("thread_id"), parent_id=data.get("parent_id"),
                        created_at=data["created_at"], status=data["status"], original_prompt=data["original_prompt"],
                        enhanced_prompt=data["enhanced_prompt"], assets=assets, score=data.get("score"),
                        status_reason=data.get("status_reason"))


def remote_history(user: str, query: str = "", offset: int = 0, limit: int = history.PAGE) -> dict:
    """History.jsx props from the server's GET /creations (newest first, or by meaning with q)."""
    query = (query or "").strip()[:300]
    params: dict[str, Any] = {"limit": limit + 1, "offset": max(0, int(offset))}
    if query:
        params["q"] = query
    with api_client(user) as client:
        response = client.get("/creations", params=params)
    response.raise_for_status()
    found = [_view(c) for c in response.json()["creations"]]
    if query:
        title = f"{len(found[:limit])} creations for “{query}”" if found else f"Nothing in your memory matches “{query}”"
    else:
        title = "Your creations" if found or offset else "No creations yet — describe an idea to make your first one."
    props = views.history_props(found[:limit], title=title, query=query, mode="search" if query else "history",
                                offset=offset, has_more=len(found) > limit)
    by_id = {v.id: v for v in found}
    for item in props["items"]:
        image = by_id[item["id"]].image
        item["thumb_url"] = api_asset_url(image.sha256) if image else None
    return props


def remote_creation(user: str, creation_id: str, notes: list[str] | None = None, status: str | None = None,
                    detail: bool = False) -> dict | None:
    """Creation.jsx props for one of the user's creations on the API server (GET /creations/{id})."""
    if not re.fullmatch(r"[A-Za-z0-9]{1,64}", creation_id or ""):
        return None
    with api_client(user) as client:
        response = client.get(f"/creations/{creation_id}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data = response.json()
    view = _view(data)
    parent = (data.get("lineage") or {}).get("parent")
    props = views.creation_props(view, notes=notes or [], status=status, detail=detail)
    props["parent"] = {"id": parent["id"], "prompt": parent["original_prompt"]} if parent else None
    props["children"] = [{"id": c["id"], "prompt": c["original_prompt"]} for c in (data.get("lineage") or {}).get("remixes") or []]
    for kind in ("image", "model"):
        asset = view.asset(kind)
        if asset is not None:
            props[f"{kind}_url"] = api_asset_url(asset.sha256)
    for item in props.get("assets") or []:  # the kinds tools added: served by the API server too
        item["url"] = api_asset_url(view.asset(item["kind"]).sha256)
    return props


def creation_card(user: str, creation_id: str, notes: list[str] | None = None, status: str | None = None) -> dict | None:
    """A creation card's props, from the server in client mode, else from this process's memory."""
    if api_url() is not None:
        return remote_creation(user, creation_id, notes, status)
    return history.creation(user, creation_id, notes, status)


def _final_message(state: dict):
    from agent.run import as_messages

    messages = as_messages(state.get("messages"))
    return messages[-1] if messages else None


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
    async def run(self, text: str, payload: Any = None) -> None:
        """One turn for `text`, or for `payload` instead (a picture of the user's: agent/uploads.picture_turn)."""
        try:
            graph = await in_thread(get_graph, self.user)
            if api_url() is not None:
                await in_thread(ensure_remote_thread, self.user, self.thread_id)
            run = TurnStream(graph, text, self.config, review=self.ask_review, payload=payload)
            async for mode, chunk in run:
                if mode == "custom":
                    await self.on_event(chunk)
                else:
                    self.on_update(chunk)
            result = run.result
        except Exception as exc:
            log.warning("step=turn status=failed thread=%s user=%s reason=%s", self.thread_id, self.user, exc, exc_info=True)
            await self.close_open_steps("stopped: something went wrong")
            await self.settle_cards()
            await cl.Message(content=views.unexpected_error(exc), author=self.author).send()
            return
        if result["paused"] is not None:  # no answer in time: leave the request paused (a new message starts afresh)
            await self.close_open_steps("")
            await cl.Message(content="The prompt is still waiting for your review, so no image was made. "
                                     "Send a new request whenever you like.", author=self.author).send()
            return
        await self.close_open_steps("")
        await self.finish(result["state"])
        log.info("step=turn thread=%s user=%s tools=%s remote=%s seconds=%.2f", self.thread_id, self.user,
                 ",".join(self.done) or "-", api_url() is not None, time.perf_counter() - self.started)

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
            head = [f"{views.step_heading(tool)} · **chosen by** {self.chosen.get(tool, 'the agent')}"]
            if event.get("input"):
                head.append(f"**input** {str(event['input'])[:500]}")
            self.step_text[tool] = head
            step.output = "\n\n".join(head)
            self.steps[tool] = step
            await step.send()
            if views.produces(tool) == "model":
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
        kind = views.produces(tool)
        if kind == "image" and cid and not result.get("error"):
            self.made = cid
            # The fallback chain with its reasons is in the step's details (views.step_output_end), not on the card;
            # an outage worth saying is in the reply. The card carries notes of its own only (none today).
            self.notes[cid] = []
            # With auto 3D on, the card says the model is on its way until the 3D step reports back.
            status = "making3d" if self.config["configurable"].get("auto_3d", True) else "image"
            props = await in_thread(creation_card, self.user, cid, self.notes[cid], status)
            if props:
                await self.send_card(cid, props)
        elif kind is not None and views.asset_kind(kind) is not None and cid and not result.get("error"):
            # the model, or a kind a tool added (a caption): the creation's card shows it (ui/views.other_assets)
            if kind == "model":
                self.modelled = cid
            notes = self.notes.setdefault(cid, [])
            props = await in_thread(creation_card, self.user, cid, notes, None)
            if props:
                if cid in self.cards:
                    msg, element = self.cards[cid]
                    element.props = props
                    await element.update()
                else:
                    await self.send_card(cid, props)
        elif kind == "recalled":
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
                props = await in_thread(creation_card, self.user, cid, self.notes.get(cid), None)
                if props:
                    element.props = props
                    await element.update()

    async def finish(self, state: dict) -> None:
        """The graph's reply (agent/nodes.respond — the same words the CLI and the API give), less what the card
        already shows (the prompt, the image and the model with their backends and files): what is left says the
        creation is saved and under which id, an outage worth saying, the hints not given before in this thread,
        and — once per session — what only the studio has: /history and the card's Remix button."""
        await self.settle_cards()
        if self.failed:  # the tool's own error, in a sentence (views.failure_message names the step kindly)
            text = views.failure_message(*self.failed)
        else:
            shown = {t for t in self.done if views.produces(t) == "prompt" or views.asset_kind(views.produces(t))} if self.cards else set()
            text = views.reply_text(_final_message(state), graph_reply(state), shown)
            text = _PATH_TAIL.sub("", text).strip() or "Done."
            if self.made and not cl.user_session.get("studio_hint_said"):
                cl.user_session.set("studio_hint_said", True)
                text += "\n\nIt is in **/history** too; **Remix** on the card starts a variation."
        await cl.Message(content=text, author=self.author).send()
        if self.recalled and not self.made and api_url() is None:  # client mode: the reply lists what was found
            found = await in_thread(history.views_of, self.user, self.recalled)
            if found:
                props = views.history_props(found, title=f"From your memory ({len(found)})", mode="recall")
                await cl.Message(content="", author=self.author,
                                 elements=[cl.CustomElement(name="History", props=props, display="inline")]).send()
