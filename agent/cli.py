"""`atelier` command line. Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from models.settings import ModelSettings

# The user's own choice, read before the default below: `atelier models pull` is the one command that goes online.
try:
    USER_HUB_OFFLINE = ModelSettings().hf_hub_offline
except ValueError:  # a setting wrong in form: main() refuses to start with one line naming it (check_settings)
    USER_HUB_OFFLINE = True
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing else here may reach for a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage; one line is clearer
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def validate_idea(idea: str, max_chars: int) -> str:
    """memory/validation.py's rule (control characters stripped, 1..max_chars), after refusing undecodable bytes."""
    from memory.validation import InvalidInput, validate_idea as checked_idea

    try:
        idea.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("the idea is not valid UTF-8 text") from None
    try:
        return checked_idea(idea, max_chars)
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None


def _read_idea(value: str) -> str:
    if value != "-":
        return value
    raw = sys.stdin.buffer.read(1_000_000)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the idea is not valid UTF-8 text") from None


def build_parser() -> Parser:
    parser = Parser(prog="atelier", description="Atelier: ideas into images and 3D models, remembered.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    create = sub.add_parser("create", help="run the agent once for a request")
    create.add_argument("idea", nargs="?", help="the request (use - to read it from stdin); with --image, what the picture shows")
    create.add_argument("--user", default="local")
    create.add_argument("--thread", help="continue this conversation (default: a new thread)")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.add_argument("--policy", choices=["auto", "model", "router", "hybrid"], help="decision policy (default: auto)")
    create.add_argument("--no-enhance", action="store_true")
    create.add_argument("--no-3d", action="store_true", help="do not make a 3D model automatically")
    create.add_argument("--review", action="store_true", help="pause to accept or edit the enhanced prompt")
    create.add_argument("--size", default="512x512", help="image size WxH")
    create.add_argument("--seed", type=int)
    create.add_argument("--image", help="a picture of your own (PNG, JPEG, WebP): kept as a creation (source upload) and made into 3D")

    recall = sub.add_parser("recall", help="search your creations by meaning and time")
    recall.add_argument("query")
    recall.add_argument("--user", default="local")
    recall.add_argument("--json", action="store_true")
    recall.add_argument("--limit", type=int, default=5)

    forget = sub.add_parser("forget", help="delete one of your creations: its rows, its vector and the files no other creation uses")
    forget.add_argument("creation_id")
    forget.add_argument("--user", default="local")
    forget.add_argument("--json", action="store_true")

    transcribe = sub.add_parser("transcribe", help="speech to text with the embedded Whisper model")
    transcribe.add_argument("file")
    transcribe.add_argument("--user", help="bias Whisper toward this user's own past prompts")
    transcribe.add_argument("--json", action="store_true")

    sub.add_parser("reindex", help="rebuild the vector index from the database")
    sub.add_parser("setup", help="prepare the embedded models and the data dir (idempotent)")

    chat = sub.add_parser("chat", help="start the Chainlit studio (or --terminal for a terminal chat)")
    chat.add_argument("--terminal", action="store_true")
    chat.add_argument("--user", default="local")
    chat.add_argument("--port", type=int, default=7860)
    chat.add_argument("--host", default="127.0.0.1")

    serve = sub.add_parser("serve", help="run the LangGraph API server")
    serve.add_argument("--port", type=int, default=2024)
    serve.add_argument("--host", default="127.0.0.1")

    export = sub.add_parser("export", help="write a creation's 3D model as glb, obj, stl, 3mf or ply (for a slicer, Blender, a phone)")
    export.add_argument("creation_id")
    export.add_argument("--format", required=True, help="glb | obj | stl | 3mf | ply (usdz is not offered: the error says why)")
    export.add_argument("--size-mm", type=float, help="largest dimension in millimetres (stl/3mf default 100)")
    export.add_argument("--out", help="file or folder to write (default ./<id>.<format>)")
    export.add_argument("--user", default="local")
    export.add_argument("--json", action="store_true")

    mcp = sub.add_parser("mcp", help="serve Atelier's tools to an MCP client (Claude Desktop, VS Code) over stdio")
    mcp.add_argument("--user", help="whose memory the tools use (default ATELIER_MCP_USER, else 'local')")

    sub.add_parser("node", help="serve a local backend as an Openfabric app (see `atelier node --help`)", add_help=False)

    evaluate = sub.add_parser("eval", help="measure decisions on the labelled requests")
    eval_sub = evaluate.add_subparsers(dest="eval_command", parser_class=Parser)
    eval_decisions = eval_sub.add_parser("decisions", help="model vs router accuracy on tests/support/data/decisions.jsonl; stored for policy auto")
    which = eval_decisions.add_mutually_exclusive_group()
    which.add_argument("--llm-url", help="an OpenAI-compatible server (…/v1); default: the configured model")
    which.add_argument("--model", help="a GGUF file to load in-process; default: the configured model")
    eval_decisions.add_argument("--limit", type=int, help="only the first N labelled requests (a quick look; not stored)")
    eval_decisions.add_argument("--json", action="store_true")

    models = sub.add_parser("models", help="what model weights are configured; pull known ones into ./models; verify")
    models_sub = models.add_subparsers(dest="models_command", parser_class=Parser)
    models_list = models_sub.add_parser("list", help="each role (llm, image, mesh, embeddings, speech): path, size, user")
    models_list.add_argument("--json", action="store_true")
    models_list.add_argument("--catalogue", action="store_true", help="also list the names `models pull` knows")
    models_pull = models_sub.add_parser("pull", help="download a known model into ./models (needs the network)")
    models_pull.add_argument("name")
    models_pull.add_argument("--accept-licence", action="store_true", help="for models whose licence restricts use")
    models_pull.add_argument("--revision", help="a commit or branch of the model's repository (default: main)")
    models_pull.add_argument("--json", action="store_true")
    models_verify = models_sub.add_parser("verify", help="check pulled models against their manifests")
    models_verify.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"]:
        from agent.openfabric_node import main as node_main

        return node_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.command:
            raise UsageError("no command given (try `atelier create \"a red fox\"` or `atelier --help`)")
        from agent.logs import configure_logging
        from tools.settings import SettingsProblem, check_settings

        configure_logging()
        try:
            # a setting wrong in form, or a backend no one registered: one line, before anything runs
            check_settings(backends=args.command in MAKING_COMMANDS)
        except SettingsProblem as exc:
            raise UsageError(f"{exc} (see the Configuration section of the README)") from None
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"atelier: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atelier: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the promise: one line, no traceback (ATELIER_LOG_LEVEL=DEBUG shows it)
        import logging

        logging.getLogger("atelier").debug("unhandled error", exc_info=True)
        print(f"atelier: error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


# -- commands --------------------------------------------------------------------------------------------
def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must look like 512x512, not {value!r}") from None
    from memory.validation import SIZE_MAX, SIZE_MIN

    if not (SIZE_MIN <= w <= SIZE_MAX and SIZE_MIN <= h <= SIZE_MAX):
        raise UsageError(f"--size must be between {SIZE_MIN}x{SIZE_MIN} and {SIZE_MAX}x{SIZE_MAX}")
    return w, h


def _user(value: str) -> str:
    from memory.validation import InvalidInput, validate_user_id

    try:
        return validate_user_id(value, "--user")
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None


def _checked_configuration(configurable: dict[str, Any]) -> None:
    """The run's settings through the same Configuration (memory/validation.py rules) the graph, the API server
    and the studio use — before anything is built, made or stored."""
    from agent.configuration import Configuration

    try:
        Configuration.from_runnable_config({"configurable": configurable})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# The one run loop and its report live in agent/run.py; re-exported here for the tests and benchmarks.
from agent.run import run_turn, turn_decisions, turn_report  # noqa: E402,F401


def _print_report(report: dict, as_json: bool, thread: str) -> int:
    """A turn's outcome: one JSON object (--json), or the reply with the thread id on stderr to continue it."""
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(report["reply"])
        print(f"(thread {thread})", file=sys.stderr)
    return 0


def cmd_create(args) -> int:
    from agent.settings import get_settings

    if args.image is not None:
        return create_from_image(args)
    if args.idea is None:
        raise UsageError("the idea is missing (or give a picture with --image PATH)")
    settings = get_settings()
    idea = validate_idea(_read_idea(args.idea), settings.max_idea_chars)
    width, height = _size(args.size)
    user = _user(args.user)
    if args.thread is not None:
        from memory.validation import InvalidInput, validate_thread_id

        try:
            args.thread = validate_thread_id(args.thread, "--thread")
        except InvalidInput as exc:
            raise UsageError(str(exc)) from None
    from agent.graph import build_graph
    from memory.session import checkpointer

    thread = args.thread or uuid.uuid4().hex
    configurable: dict[str, Any] = {"thread_id": thread, "user_id": user, "width": width, "height": height,
                                    "enhance": not args.no_enhance, "auto_3d": not args.no_3d, "review_prompt": args.review}
    if args.policy:
        configurable["decision_policy"] = args.policy
    if args.seed is not None:
        configurable["seed"] = args.seed
    _checked_configuration(configurable)
    config = {"configurable": configurable}
    graph = build_graph(checkpointer=checkpointer())  # the memory layer's settings say where threads live
    progress = None if args.json or not sys.stderr.isatty() else _print_event
    review = _ask_review if args.review and sys.stdin.isatty() else None
    report = turn_report(run_turn(graph, idea, config, on_event=progress, review=review), config)
    if report["creation_id"] and (report["original_prompt"] is None or report["enhanced_prompt"] is None):
        # not enhanced (--no-enhance, a remix): the state has no idea / enhanced prompt; say what was stored
        from memory.store import get_store

        stored = get_store().get(report["creation_id"], user_id=user)
        if stored is not None:
            report["original_prompt"] = report["original_prompt"] or stored.original_prompt
            report["enhanced_prompt"] = report["enhanced_prompt"] or stored.enhanced_prompt
    return _print_report(report, args.json, thread)


def create_from_image(args) -> int:
    """`atelier create --image PATH ["what it shows"]`: the picture validated and kept as a creation of its own
    (memory/upload.py), then the graph's image → 3D step on it (agent/uploads.py), unless --no-3d."""
    from pathlib import Path

    from agent.graph import build_graph
    from agent.settings import get_settings
    from agent.uploads import image_of, picture_configurable, picture_turn
    from memory.session import checkpointer
    from memory.settings import get_settings as memory_settings
    from memory.store import get_store
    from memory.upload import store_upload
    from memory.validation import InvalidInput, validate_thread_id

    user = _user(args.user)
    description = validate_idea(_read_idea(args.idea), get_settings().max_idea_chars) if args.idea else None
    path, limit = Path(args.image), memory_settings().upload_max_bytes
    if not path.is_file():
        raise UsageError(f"--image {args.image} is not a file")
    if path.stat().st_size > limit:
        raise UsageError(f"--image is {path.stat().st_size} bytes; the limit is {limit} (ATELIER_UPLOAD_MAX_BYTES)")
    try:
        thread = validate_thread_id(args.thread, "--thread") if args.thread is not None else uuid.uuid4().hex
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None
    configurable = picture_configurable(user, thread, args.seed)
    _checked_configuration(configurable)  # before anything is stored
    try:
        view = store_upload(get_store(), user, path.read_bytes(), filename=path.name, description=description, thread_id=thread)
    except InvalidInput as exc:
        raise UsageError(str(exc)) from None
    if args.no_3d:
        report = {"creation_id": view.id, "thread_id": thread, "user_id": user, "original_prompt": view.original_prompt,
                  "image": view.image.path, "model": None, "upload": view.id, "reply": f"Kept your picture as creation {view.id}."}
    else:
        config = {"configurable": configurable}
        graph = build_graph(checkpointer=checkpointer())
        progress = None if args.json or not sys.stderr.isatty() else _print_event
        report = turn_report(run_turn(graph, None, config, on_event=progress, payload=picture_turn(view.id, image_of(view))), config)
        report["creation_id"], report["upload"] = report.get("creation_id") or view.id, view.id
        report["original_prompt"] = report.get("original_prompt") or view.original_prompt
    return _print_report(report, args.json, thread)


class _EventPrinter:
    """Step lines on stderr; a step's fractional progress (denoising steps, Openfabric progress) as one tqdm bar
    that updates in place instead of a line per event."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event: dict) -> None:
        kind, fraction = event.get("event"), event.get("fraction")
        if kind == "progress" and isinstance(fraction, (int, float)):
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="   {percentage:3.0f}% |{bar:24}| {postfix}")
            self.bar.n = max(0, min(100, round(fraction * 100)))
            self.bar.set_postfix_str(event.get("message") or "")  # refreshes the bar
            return
        self.close()
        if kind == "step_start":
            print(f"→ {event['tool']} …", file=sys.stderr)
        elif kind == "progress" and event.get("message"):
            print(f"   {event['message']}", file=sys.stderr)
        elif kind == "step_end":
            print(f"✓ {event['tool']} ({event.get('backend') or '-'}, {event['seconds']:.2f}s)", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_print_event = _EventPrinter()


def _ask_review(payload: dict) -> dict:
    print(f"Enhanced prompt:\n  {payload.get('enhanced_prompt')}\nPress Enter to accept, or type a new prompt:", file=sys.stderr)
    edited = sys.stdin.readline().strip()
    return {"prompt": edited} if edited else {"action": "accept"}


def cmd_recall(args) -> int:
    from memory.recall import MAX_QUERY_CHARS, recall
    from memory.store import get_store

    query = " ".join(args.query.split())  # as GET /creations?q= reads it
    if not query:
        raise UsageError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise UsageError(f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    if not 1 <= args.limit <= 100:
        raise UsageError("--limit must be between 1 and 100")
    result = recall(get_store(), query, _user(args.user), limit=args.limit)
    rows = [c.to_dict() for c in result.creations]
    note = result.window.note if result.window else None
    if args.json:
        print(json.dumps({"query": query, "search": result.query, "mode": result.mode,
                          "window": [result.window.start.isoformat(), result.window.end.isoformat()] if result.window else None,
                          **({"note": note} if note else {}), "creations": rows}, ensure_ascii=False))
    else:
        if note:
            print(f"note: {note}", file=sys.stderr)
        for c in rows:
            print(f"{c['id']}  {c['created_at'][:16]}  {c['score'] if c['score'] is not None else '':<6}  {c['original_prompt']}")
        if not rows:
            print("nothing found")
    return 0


def cmd_forget(args) -> int:
    from memory.store import get_store
    from memory.validation import is_creation_id

    user = _user(args.user)
    result = get_store().forget(args.creation_id, user) if is_creation_id(args.creation_id) else None
    if result is None:  # unknown, or another user's: nothing changed
        print(f"atelier: error: no creation {args.creation_id!r} for user {user!r}; nothing was deleted", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"forgot {result['id']}: {len(result['files_removed'])} file(s) removed, {len(result['files_kept'])} kept "
              f"(used by other creations), {result['remixes_orphaned']} remix(es) now without a parent")
    return 0


def cmd_transcribe(args) -> int:
    from agent.speech import TranscriptionError, transcribe

    try:
        result = transcribe(args.file, user_id=_user(args.user) if args.user is not None else None)
    except TranscriptionError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"text": result.text, "language": result.language, "duration": result.duration, "seconds": result.seconds}))
    else:
        print(result.text)
    return 0


def cmd_reindex(args) -> int:
    from tqdm import tqdm

    from memory.store import get_store

    store = get_store()
    with tqdm(total=store.count(), desc="reindex", unit="creation", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
        n = store.reindex(progress=bar.update)
    print(f"indexed {n} creations")
    return 0


def cmd_setup(args) -> int:
    from tqdm import tqdm

    from memory.settings import get_settings
    from models.registry import describe

    settings = get_settings()
    steps = [("data dir", lambda: settings.data_dir.mkdir(parents=True, exist_ok=True)),
             ("embedded LLM", lambda: __import__("models.llm", fromlist=["get_llm"]).get_llm()),
             # once: later processes embed with onnxruntime and never import torch
             ("embeddings ONNX export", lambda: __import__("memory.embeddings", fromlist=["export_onnx"]).export_onnx()),
             ("embeddings", lambda: __import__("memory.embeddings", fromlist=["embed"]).embed(["warm up"])),
             ("whisper", lambda: __import__("models.speech", fromlist=["load"]).load()),
             ("memory store", lambda: __import__("memory.store", fromlist=["get_store"]).get_store().ensure_index())]
    with tqdm(steps, desc="setup", unit="step", file=sys.stderr) as bar:
        for name, step in bar:
            bar.set_postfix_str(name)
            step()
    for name, path in describe().items():
        print(f"{name}: {path}")
    print(f"data: {settings.data_dir.resolve()}")
    return 0


def cmd_models(args) -> int:
    from models import catalogue
    from models.settings import get_settings

    settings = get_settings()
    models_dir = settings.models_dir
    if args.models_command == "list":
        rows = catalogue.inventory(models_dir, settings.llm_url)
        known = [asdict_entry(e) for e in catalogue.CATALOGUE.values()] if args.catalogue else None
        if args.json:
            print(json.dumps({"models_dir": str(models_dir), "roles": rows, **({"catalogue": known} if known else {})}))
            return 0
        for row in rows:
            where = f"{row['path']} ({row['size_bytes'] / 1e6:,.0f} MB)" if row["present"] else "-"
            print(f"{row['role']:<11} {'present' if row['present'] else 'absent ':<8} {where}")
            print(f"{'':<11} used by {row['used_by']}" + (f"; {row['note']}" if row["note"] else ""))
        for item in known or []:
            print(f"pull {item['name']:<24} {item['role']:<7} ~{item['size_gb']:g} GB  {item['summary']}")
        return 0
    if args.models_command == "pull":
        try:
            result = catalogue.pull(args.name, models_dir, accept_licence=args.accept_licence, revision=args.revision,
                                    offline=USER_HUB_OFFLINE, token=settings.hf_token,
                                    progress=lambda msg: print(msg, file=sys.stderr))
        except catalogue.CatalogueError as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            print(json.dumps(catalogue.as_dict(result)))
        else:
            print(f"{result.name}: {len(result.files)} files in {result.path} ({result.downloaded_bytes / 1e6:,.1f} MB "
                  f"downloaded, {result.seconds:.1f} s)")
            if result.setting_hint:
                print(f"use it: {result.setting_hint}  (in .env or the environment)")
        return 0
    if args.models_command == "verify":
        results = [catalogue.verify_folder(folder) for folder in catalogue.pulled_folders(models_dir)]
        if args.json:
            print(json.dumps({"models_dir": str(models_dir), "results": [catalogue.as_dict(r) for r in results]}))
        else:
            if not results:
                print(f"no pulled models in {models_dir}")
            for r in results:
                print(f"{r.name}: {'ok' if r.ok else 'BROKEN'} ({r.files} files)" + "".join(f"\n  {p}" for p in r.problems))
        return 0 if all(r.ok for r in results) else 1
    raise UsageError("models needs a command: list, pull NAME or verify")


def asdict_entry(item) -> dict:
    from dataclasses import asdict

    return {**asdict(item), "files": list(item.files)}


def cmd_chat(args) -> int:
    if args.terminal:
        return terminal_chat(_user(args.user))
    import subprocess

    from memory.settings import get_settings

    checkout = Path(__file__).resolve().parent.parent
    app = checkout / "ui" / "app.py"
    cmd = [sys.executable, "-m", "chainlit", "run", str(app), "--headless", "--host", args.host, "--port", str(args.port)]
    env = {**os.environ, "CHAINLIT_APP_ROOT": str(studio_root(get_settings().data_dir, checkout))}
    return subprocess.call(cmd, cwd=checkout, env=env)


STUDIO_FILES = (".chainlit", "chainlit.md", "public")  # what Chainlit reads from its app root


def studio_root(data_dir: Path, checkout: Path) -> Path:
    """Chainlit's app root, in the data dir: Chainlit keeps every upload (a voice recording, a file) under
    <app root>/.files, and the app root is the working directory unless CHAINLIT_APP_ROOT says otherwise, so with
    the checkout as the root they landed in the checkout whatever the data dir. The root is <data dir>/studio,
    whose config, readme and public files are links to the checkout's."""
    root = Path(data_dir).resolve() / "studio"
    root.mkdir(parents=True, exist_ok=True)
    for name in STUDIO_FILES:
        link, target = root / name, Path(checkout) / name
        if link.is_symlink() and link.readlink() == target:
            continue
        if link.is_symlink():
            link.unlink()  # a link to another checkout (the data dir was moved or shared): point it at this one
        if not link.exists() and target.exists():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return root


def terminal_chat(user: str) -> int:
    from agent.graph import build_graph
    from agent.settings import get_settings
    from memory.session import checkpointer

    graph = build_graph(checkpointer=checkpointer())
    config = {"configurable": {"thread_id": uuid.uuid4().hex, "user_id": user}}
    print("Atelier — type an idea (\"a glowing dragon on a cliff at sunset\"), or 'quit'.")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            return 0
        if text.lower() in ("quit", "exit", "q"):
            return 0
        if not text:
            continue
        try:
            text = validate_idea(text, get_settings().max_idea_chars)
        except UsageError as exc:
            print(f"atelier> {exc}")
            continue
        result = run_turn(graph, text, config, on_event=_print_event, review=None)
        print("atelier>", result["state"]["messages"][-1].content)


def cmd_eval(args) -> int:
    """`atelier eval decisions`: the labelled requests through the router and through the model alone;
    both accuracies are stored (keyed by the model's file hash or served id) for policy auto."""
    if args.eval_command != "decisions":
        raise UsageError("say what to evaluate: `atelier eval decisions`")
    from agent import calibration
    from models.llm import LocalLLM, ServerLLM, get_llm

    if args.model:
        if not os.path.isfile(args.model):
            raise UsageError(f"--model {args.model} is not a file")
        from models.settings import get_settings

        s = get_settings()
        llm = LocalLLM(args.model, n_ctx=s.llm_n_ctx, n_threads=s.llm_threads, n_gpu_layers=s.llm_n_gpu_layers)
    elif args.llm_url:
        if not args.llm_url.startswith(("http://", "https://")):
            raise UsageError(f"--llm-url must be an http(s) URL, not {args.llm_url!r}")
        llm = ServerLLM(args.llm_url)
    else:
        llm = get_llm()
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    items = calibration.load_dataset()
    items = items[: args.limit] if args.limit else items
    key = llm.key
    progress = None if args.json or not sys.stderr.isatty() else (lambda item, plan, ok: print(f"{'✓' if ok else '✗'} {item['text'][:60]}", file=sys.stderr))
    router = calibration.evaluate("router", items)
    model = calibration.evaluate("model", items, llm, on_item=progress)
    stored = None
    if not args.limit:
        calibration.store(calibration.ROUTER_KEY, {k: router[k] for k in ("accuracy", "n", "first_step_accuracy")})
        stored = str(calibration.store(key, {"model": llm.name, **{k: model[k] for k in ("accuracy", "n", "first_step_accuracy")}}))
    resolved = calibration.resolve("auto", key) if stored else None
    report = {"model_key": key, "model": llm.name, "router": router, "model_only": model, "stored": stored,
              "auto": resolved and {"policy": resolved.policy, "reason": resolved.reason}}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"router     {router['accuracy']:6.1%}  (n={router['n']})")
        print(f"model      {model['accuracy']:6.1%}  first step {model['first_step_accuracy']:.1%}  {llm.name} [{key}]  "
              f"{model['seconds_per_request']:.2f}s/request")
        print(f"auto: {resolved.reason}  (stored in {stored})" if resolved else "not stored (--limit)")
    return 0


def cmd_serve(args) -> int:
    """The LangGraph API server (in-memory runtime) on langgraph.json, over the same memory as the chat; its
    threads live under <data dir>/api (see agent/api/server.py and docs/deployment.md)."""
    from agent.api.server import serve

    return serve(args.host, args.port)


def cmd_export(args) -> int:
    """`atelier export ID --format stl --size-mm 80`: tools/export.py on the user's creation, written atomically."""
    import tempfile
    from pathlib import Path

    from memory.store import get_store
    from memory.validation import is_creation_id
    from tools.export import ExportError, check_format, check_size_mm, export_creation

    user = _user(args.user)
    try:
        fmt, size_mm = check_format(args.format), check_size_mm(args.size_mm)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    if not is_creation_id(args.creation_id):
        print(f"atelier: error: no creation {args.creation_id!r} for user {user!r}", file=sys.stderr)
        return 1
    try:
        result = export_creation(get_store(), args.creation_id, user, fmt, size_mm)
    except LookupError as exc:  # unknown, or another user's
        print(f"atelier: error: {exc}", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"atelier: error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path.cwd()
    if out.is_dir():
        out = out / f"{args.creation_id}{result.extension}"
    if not out.parent.is_dir():
        raise UsageError(f"--out: the folder {str(out.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".atelier-export-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(result.data)
        os.replace(tmp, out)  # a reader never sees half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    facts = {**result.facts, "path": str(out.resolve())}
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
    else:
        size = f", {facts['size_mm']:g} mm" if facts.get("size_mm") else ""
        faces = f", {facts['faces']} triangles" if facts.get("faces") else ""
        print(f"wrote {out} ({fmt.upper()}{size}{faces}, {facts['bytes']} bytes)")
    if facts.get("watertight") is False:
        print("atelier: warning: the mesh is not watertight even after filling holes; a slicer may need to repair it", file=sys.stderr)
    return 0


def cmd_mcp(args) -> int:
    """`atelier mcp`: Atelier's MCP server on stdin/stdout (agent/mcp_server.py); stdout carries only the protocol."""
    from agent.mcp_server import run_stdio
    from memory.validation import InvalidInput

    try:
        return run_stdio(_user(args.user) if args.user is not None else None)
    except InvalidInput as exc:  # ATELIER_MCP_USER breaks the user-id rule
        raise UsageError(str(exc)) from None


MAKING_COMMANDS = {"create", "chat", "serve", "setup", "eval", "mcp"}  # those that may run a backend: their lists are checked at start


COMMANDS = {"eval": cmd_eval, "create": cmd_create, "recall": cmd_recall, "forget": cmd_forget, "transcribe": cmd_transcribe, "reindex": cmd_reindex,
            "setup": cmd_setup, "chat": cmd_chat, "serve": cmd_serve, "models": cmd_models,
            "mcp": cmd_mcp, "export": cmd_export}

if __name__ == "__main__":
    sys.exit(main())
