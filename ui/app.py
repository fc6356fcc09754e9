"""Atelier studio: the Chainlit app started by `atelier chat` (python -m chainlit run ui/app.py).

Chat with live steps, creation cards with an offline 3D viewer, history with search, settings, review
of the prompt, voice input, per-user memories. See docs/ui.md.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `chainlit run ui/app.py` loads this file by path
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chainlit as cl  # noqa: E402
from chainlit.server import app as server_app  # noqa: E402
from fastapi import APIRouter, Depends, HTTPException, Request  # noqa: E402  (module level: FastAPI resolves the
from fastapi.responses import Response  # noqa: E402                          route's string annotations here)

from agent.settings import get_settings as agent_settings  # noqa: E402
from memory.settings import get_settings as memory_settings  # noqa: E402
from ui import history, routes, settings_panel  # noqa: E402
from ui.auth import AuthConfigError, check_password, ensure_secret, local_user_name, parse_users  # noqa: E402
from ui.datalayer import SQLiteDataLayer  # noqa: E402
from ui.runner import Turn, api_url, get_graph, identity_headers, in_thread, remote_creation, remote_history  # noqa: E402
from ui.settings import get_settings as ui_settings  # noqa: E402
from ui.voice import DIDNT_CATCH, VoiceBuffer  # noqa: E402

log = logging.getLogger("atelier.ui")
AUTHOR = "Atelier"


def data_dir() -> Path:
    return Path(memory_settings().data_dir)


@cl.on_app_startup
def _start_studio() -> None:
    """The studio's start-up, once, when Chainlit's server starts (before it answers a request): logging, the data
    dir and the cookie secret, the login callbacks (password login with ATELIER_AUTH_USERS, else the local user),
    the studio's own routes, and the warm-up of the graph in the background. A broken ATELIER_AUTH_USERS stops
    the server here with one line naming the problem."""
    try:
        from agent.logs import configure_logging

        configure_logging()
    except Exception:  # logging set-up is a nicety; the studio runs without it
        pass
    data_dir().mkdir(parents=True, exist_ok=True)
    try:
        users = parse_users(ui_settings().auth_users)
    except AuthConfigError as exc:
        log.error("step=auth status=invalid reason=%s", exc)
        print(f"atelier chat: {exc}", file=sys.stderr, flush=True)
        os._exit(1)  # a SystemExit here would only end Chainlit's lifespan, and the process would exit 0
    ensure_secret(data_dir())
    _install_login(users)
    routes.install(server_app)
    if api_url() is not None:
        _install_api_assets(server_app)
        log.info("step=studio mode=client api=%s", api_url())
    else:  # the image and mesh pipelines load in the background; called here, in the server's main thread, because
        from tools.backends import warm_up  # some imports need it (pymeshlab: tools/backends/__init__.py warm_up)

        warm_up()
    threading.Thread(target=_warm_up, name="atelier-warm-up", daemon=True).start()


def _install_login(users: dict[str, str]) -> None:
    """Password login for the users of ATELIER_AUTH_USERS; without any, one local user signed in without a form,
    so threads and memories still have an owner. (Chainlit reads these callbacks per request, so registering
    them at start-up, before the first request, is enough.)"""
    if users:
        @cl.password_auth_callback
        def _password_login(username: str, password: str):
            if check_password(users, username, password):
                log.info("step=login user=%s", username)
                return cl.User(identifier=username.strip(), metadata={"provider": "password"})
            log.info("step=login status=refused user=%s", username[:64])
            return None
    else:
        @cl.header_auth_callback
        def _local_login(headers):
            return cl.User(identifier=local_user_name(), metadata={"provider": "local"})
    from chainlit.auth import ensure_jwt_secret

    ensure_jwt_secret()  # what `chainlit run` checks after import, when no login callback existed yet


@cl.data_layer
def _data_layer():
    return SQLiteDataLayer(data_dir() / "ui_threads.sqlite")


# -- client mode (ATELIER_API_URL): the server's assets, fetched with the signed-in user's identity -------------
def _install_api_assets(app) -> None:
    """GET /atelier/api-asset/{sha256}: the API server's GET /assets/{sha256} through the studio, so the browser
    never needs the server's address or an identity of its own, and the studio needs no share of its data dir."""
    import re

    import httpx

    router = APIRouter()

    @router.get("/atelier/api-asset/{sha256}")
    async def api_asset(sha256: str, request: Request, user: str = Depends(routes._identifier)):
        if api_url() is None or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HTTPException(status_code=404, detail="no such asset")
        download = {"download": 1} if request.query_params.get("download") else None
        try:
            async with httpx.AsyncClient(base_url=api_url(), headers=identity_headers(user), timeout=120) as client:
                answer = await client.get(f"/assets/{sha256}", params=download)
        except httpx.HTTPError as exc:
            log.warning("step=api_asset status=unreachable sha256=%s reason=%s", sha256[:12], exc)
            raise HTTPException(status_code=502, detail="the API server did not answer") from None
        if answer.status_code in (400, 404):  # unknown, or another user's: the server answers both the same way
            raise HTTPException(status_code=404, detail="no such asset")
        if answer.status_code != 200:
            raise HTTPException(status_code=502, detail=f"the API server answered {answer.status_code}")
        keep = {k: answer.headers[k] for k in ("etag", "cache-control", "content-disposition") if k in answer.headers}
        return Response(answer.content, media_type=answer.headers.get("content-type"), headers=keep)

    routes_list = app.router.routes
    before = len(routes_list)
    app.include_router(router)
    added = routes_list[before:]
    del routes_list[before:]
    routes_list[0:0] = added  # ahead of Chainlit's catch-all page route, as ui/routes.install does


def _warm_up() -> None:
    """Load the graph, memory and router in the background so the first request does not wait for them."""
    if api_url() is not None:  # client mode: the server holds the graph, the memory and the router
        return
    try:
        get_graph()
        from agent.router import get_router
        from memory.store import get_store

        get_store().ensure_index()
        get_router().classify("a red fox")
    except Exception as exc:
        log.warning("step=warm_up status=failed reason=%s", exc)


# -- session helpers -------------------------------------------------------------------------------
def current_user() -> str:
    user = cl.user_session.get("user")
    return getattr(user, "identifier", None) or local_user_name()


def current_settings() -> dict:
    return {**settings_panel.defaults(), **(cl.user_session.get("atelier_settings") or {})}


COMMANDS = [
    {"id": "history", "icon": "images", "description": "Browse your creations (newest first, with search)", "button": True, "persistent": False},
    {"id": "recall", "icon": "search", "description": "Search your creations by meaning and time, e.g. “dragons from last week”", "button": False, "persistent": False},
    {"id": "3d", "icon": "box", "description": "Turn the latest image into a 3D model", "button": False, "persistent": False},
]


async def _setup_session(values: dict | None = None) -> None:
    values = {**settings_panel.defaults(), **(values or {})}
    cl.user_session.set("atelier_settings", values)
    await cl.ChatSettings(settings_panel.widgets(values)).send()
    await cl.context.emitter.set_commands(COMMANDS)


@cl.set_starters
async def _starters(user=None, language=None):
    return [
        cl.Starter(label="A glowing dragon", message="a glowing dragon on a cliff at sunset", icon="/public/icons/spark.svg"),
        cl.Starter(label="My creations", message="/history", icon="/public/icons/grid.svg"),
        cl.Starter(label="What did I make last week?", message="/recall creations from last week", icon="/public/icons/search.svg"),
        cl.Starter(label="Make the last image 3D", message="/3d", icon="/public/icons/cube.svg"),
    ]


@cl.on_chat_start
async def _start():
    await _setup_session()


@cl.on_chat_resume
async def _resume(thread):
    # Chainlit has already put the thread's saved session (our settings included) back in user_session.
    values = cl.user_session.get("atelier_settings") or {}
    if not values and isinstance(thread.get("metadata"), dict):
        values = thread["metadata"].get("atelier_settings") or {}
    await _setup_session(values)


@cl.on_settings_update
async def _settings_update(values: dict):
    merged = {**current_settings(), **values}
    _, problems = settings_panel.to_configurable(merged)
    cl.user_session.set("atelier_settings", merged)
    for problem in problems:
        await cl.context.emitter.send_toast(problem.capitalize(), "warning")


# -- messages ------------------------------------------------------------------------------------
async def handle_text(text: str, command: str | None = None) -> None:
    text = (text or "").strip()
    if command is None and text.startswith("/"):
        head, _, rest = text[1:].partition(" ")
        if head.lower() in ("history", "recall", "3d", "help"):
            command, text = head.lower(), rest.strip()
    if command == "history":
        return await show_history(text)
    if command == "recall":
        return await show_history(text)
    if command == "help":
        return await cl.Message(content=HELP, author=AUTHOR).send()
    if command == "3d":
        text = "turn the last image into a 3D model"
    if not text:
        return await cl.Message(content="Tell me an idea — for example “a glowing dragon on a cliff at sunset”.", author=AUTHOR).send()
    limit = agent_settings().max_idea_chars
    if len(text) > limit:
        return await cl.Message(content=f"That is {len(text)} characters long; please keep a request under {limit}.", author=AUTHOR).send()
    configurable, problems = settings_panel.to_configurable(current_settings())
    for problem in problems:
        await cl.context.emitter.send_toast(problem.capitalize(), "warning")
    turn = Turn(current_user(), cl.context.session.thread_id, configurable, author=AUTHOR)
    await turn.run(text)


HELP = """**Atelier** turns ideas into images and 3D models, and remembers them.

- Describe an idea: “a glowing dragon on a cliff at sunset”.
- Ask for the past: “the castle from last week”, or **/recall** dragons from last week.
- Remix: “like before, but with wings” — or press **Remix** on any card.
- **/history** browses your creations; **/3d** turns the latest image into a model.
- Drop or attach a picture of your own (“make this 3D”): it is kept as a creation and turned into a 3D model.
- The microphone button takes your voice; the settings panel has backends, size, seed, enhance, auto-3D and prompt review."""


async def handle_picture(element, text: str) -> None:
    """A picture dropped or attached in the chat ("make this 3D"): kept as a creation of the user's (source
    upload: validated, upright, metadata stripped) and made into a 3D model by the graph's image → 3D step. The
    message's words are kept as what the picture shows."""
    from agent.uploads import MAKE_3D_REQUEST, picture_turn
    from memory.validation import clean_bounded
    from ui.runner import PictureRefused, upload_picture

    limit = memory_settings().upload_max_bytes
    path = Path(getattr(element, "path", None) or "")
    size = path.stat().st_size if path.is_file() else len(getattr(element, "content", None) or b"")
    if size > limit:
        return await cl.Message(content=f"That picture is {size} bytes; the limit is {limit}.", author=AUTHOR).send()
    data = path.read_bytes() if path.is_file() else bytes(getattr(element, "content", None) or b"")
    from agent.router import cue_intent

    words = clean_bounded(text or "", agent_settings().max_idea_chars, "the message") or None
    if words and cue_intent(words) == "to_3d":  # "make this 3D" asks for the model; it does not say what the picture shows
        words = None
    user, thread_id = current_user(), cl.context.session.thread_id
    try:
        creation_id, image = await in_thread(upload_picture, user, data, getattr(element, "name", None), words, thread_id)
    except PictureRefused as exc:
        return await cl.Message(content=f"I can't use that picture: {exc}.", author=AUTHOR).send()
    log.info("step=studio_upload user=%s creation=%s bytes=%d", user, creation_id, len(data))
    configurable, problems = settings_panel.to_configurable(current_settings())
    for problem in problems:
        await cl.context.emitter.send_toast(problem.capitalize(), "warning")
    configurable = {**configurable, "decision_policy": "router", "enhance": False, "auto_3d": True}
    await Turn(user, thread_id, configurable, author=AUTHOR).run(MAKE_3D_REQUEST, payload=picture_turn(creation_id, image))


def _picture(message: cl.Message):
    """The first picture attached to the message, if any (Chainlit's spontaneous file upload)."""
    for element in getattr(message, "elements", None) or []:
        mime = getattr(element, "mime", None) or ""
        if mime.startswith("image/") or getattr(element, "type", None) == "image":
            return element
    return None


@cl.on_message
async def _on_message(message: cl.Message):
    try:
        if (picture := _picture(message)) is not None:
            return await handle_picture(picture, message.content)
        await handle_text(message.content, getattr(message, "command", None) or None)
    except Exception as exc:  # the promise: no stack traces in the chat
        log.warning("step=message status=failed reason=%s", exc, exc_info=True)
        from ui.views import unexpected_error

        await cl.Message(content=unexpected_error(exc), author=AUTHOR).send()


async def show_history(query: str) -> None:
    user = current_user()
    if api_url() is not None:
        props = await in_thread(remote_history, user, query)
    else:
        props = await in_thread(history.search, user, query) if query.strip() else await in_thread(history.page, user)
    await cl.Message(content="", author=AUTHOR,
                     elements=[cl.CustomElement(name="History", props=props, display="inline")]).send()


# -- actions from the custom elements -------------------------------------------------------------
@cl.action_callback("history_search")
async def _history_search(action: cl.Action):
    query = str((action.payload or {}).get("query") or "")
    if api_url() is not None:
        return await in_thread(remote_history, current_user(), query)
    if query.strip():
        return await in_thread(history.search, current_user(), query)
    return await in_thread(history.page, current_user())


@cl.action_callback("history_page")
async def _history_page(action: cl.Action):
    try:
        offset = int((action.payload or {}).get("offset") or 0)
    except (TypeError, ValueError):
        offset = 0
    if api_url() is not None:
        return await in_thread(remote_history, current_user(), "", offset)
    return await in_thread(history.page, current_user(), offset)


@cl.action_callback("open_creation")
async def _open_creation(action: cl.Action):
    cid = str((action.payload or {}).get("id") or "")
    if api_url() is not None:
        props = await in_thread(remote_creation, current_user(), cid, detail=True)
    else:
        props = await in_thread(history.detail, current_user(), cid)
    if props is None:
        await cl.Message(content="That creation is not in your memory.", author=AUTHOR).send()
        return {"ok": False}
    await cl.Message(content="", author=AUTHOR, elements=[cl.CustomElement(name="Creation", props=props, display="inline")]).send()
    return {"ok": True}


@cl.action_callback("remix")
async def _remix(action: cl.Action):
    payload = action.payload or {}
    if api_url() is not None:
        text = await in_thread(_remote_remix_request, current_user(), str(payload.get("id") or ""), str(payload.get("change") or ""))
    else:
        text = await in_thread(history.remix_request, current_user(), str(payload.get("id") or ""), str(payload.get("change") or ""))
    if text is None:
        await cl.Message(content="That creation is not in your memory.", author=AUTHOR).send()
        return {"ok": False}
    msg = cl.Message(content=text, author=current_user(), type="user_message")
    await msg.send()
    asyncio.get_running_loop().create_task(_run_remix(text))
    return {"ok": True, "request": text}


def _remote_remix_request(user: str, creation_id: str, change: str) -> str | None:
    """history.remix_request's words, for a creation read from the API server."""
    props = remote_creation(user, creation_id)
    return None if props is None else history.remix_text(props["prompt"], change)


async def _run_remix(text: str) -> None:
    try:
        await cl.context.emitter.task_start()
        await handle_text(text)
    except Exception as exc:
        log.warning("step=remix status=failed reason=%s", exc, exc_info=True)
        from ui.views import unexpected_error

        await cl.Message(content=unexpected_error(exc), author=AUTHOR).send()
    finally:
        await cl.context.emitter.task_end()


# -- voice -----------------------------------------------------------------------------------------
def _sample_rate() -> int:
    from chainlit.config import config

    return int(getattr(config.features.audio, "sample_rate", 16000) or 16000)


@cl.on_audio_start
async def _audio_start():
    log.info("step=voice_start sample_rate=%d", _sample_rate())
    cl.user_session.set("voice", VoiceBuffer(sample_rate=_sample_rate()))
    cl.user_session.set("voice_done", False)

    def load() -> None:
        try:
            from agent.speech import _load

            _load()
        except Exception as exc:
            log.warning("step=load_whisper status=failed reason=%s", exc)

    threading.Thread(target=load, daemon=True).start()
    return True


@cl.on_audio_chunk
async def _audio_chunk(chunk):
    buffer: VoiceBuffer | None = cl.user_session.get("voice")
    if buffer is None:
        buffer = VoiceBuffer(sample_rate=_sample_rate())
        cl.user_session.set("voice", buffer)
    if len(buffer.chunks) % 50 == 0:
        log.debug("step=voice_chunk n=%d seconds=%.1f speech=%s", len(buffer.chunks), buffer.seconds, buffer.heard_speech)
    if buffer.add(chunk.data, getattr(chunk, "elapsedTime", None)):
        # The speaker paused: stop the microphone and handle what was said (shown as a running task,
        # as Chainlit does when the user stops the microphone).
        await cl.context.emitter.update_audio_connection("off")
        await cl.context.emitter.task_start()
        try:
            await _finish_voice()
        finally:
            await cl.context.emitter.task_end()


@cl.on_audio_end
async def _audio_end():
    await _finish_voice()


async def _finish_voice() -> None:
    if cl.user_session.get("voice_done"):
        return
    cl.user_session.set("voice_done", True)
    buffer: VoiceBuffer | None = cl.user_session.get("voice")
    cl.user_session.set("voice", None)
    if buffer is None or not buffer.chunks or buffer.seconds < 0.3:
        await cl.Message(content=DIDNT_CATCH, author=AUTHOR).send()
        return
    from agent.speech import TranscriptionError, transcribe

    if dump := ui_settings().ui_audio_dump_dir:  # debugging aid: keep what the microphone sent
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / f"voice-{int(time.time() * 1000)}.wav").write_bytes(buffer.wav_bytes())
    try:
        # the signed-in user's own past prompts bias Whisper toward their words (agent/speech.py, docs/voice.md)
        transcript = await in_thread(transcribe, buffer.wav_bytes(), user_id=current_user())
    except TranscriptionError as exc:
        log.warning("step=transcribe status=failed reason=%s", exc)
        await cl.Message(content="I couldn't read the recording — please try the microphone again, or type your idea.", author=AUTHOR).send()
        return
    log.info("step=voice seconds=%.1f end=%s heard=%r", buffer.seconds, buffer.reason, transcript.text[:80])
    if transcript.heard_nothing:
        await cl.Message(content=DIDNT_CATCH, author=AUTHOR).send()
        return
    session = cl.context.session
    if not session.has_first_interaction:  # the pause ended the recording before Chainlit saw an audio_end
        session.has_first_interaction = True
        await cl.context.emitter.init_thread(transcript.text)
    said = cl.Message(content=transcript.text, author=current_user(), type="user_message")
    await said.send()
    try:
        await handle_text(transcript.text)
    except Exception as exc:
        log.warning("step=voice_turn status=failed reason=%s", exc, exc_info=True)
        from ui.views import unexpected_error

        await cl.Message(content=unexpected_error(exc), author=AUTHOR).send()
