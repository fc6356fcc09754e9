"""`serve()`: the LangGraph API server (what `atelier serve` and `python -m agent.api.server` run).

It runs the in-memory LangGraph runtime (what `langgraph dev --no-browser --no-reload` runs) with its working
directory under the data dir, because langgraph-runtime-inmem keeps threads, runs and checkpoints in
./.langgraph_api relative to the cwd: under <data dir>/api they survive a restart and never land in the repo.
`--routes` prints the server's whole route table with the allow-list's verdict on each route.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.api.auth import max_body_bytes
from agent.api.guard import route_access, route_table
from agent.settings import SettingsError, checked_settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


def load_config(path: Path | None = None) -> dict:
    return json.loads((path or ROOT / "langgraph.json").read_text())


def prepare_environment(data_dir: str | os.PathLike | None = None) -> Path:
    """Pin everything that is relative to the cwd before the server changes into its state dir."""
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)  # pydantic-settings would not find .env after the chdir
    from memory.settings import get_settings as memory_settings
    from models.settings import get_settings as model_settings, reset_settings

    if data_dir is not None:
        os.environ["ATELIER_DATA_DIR"] = str(data_dir)
        reset_settings()
    resolved = Path(memory_settings().data_dir).resolve()
    os.environ["ATELIER_DATA_DIR"] = str(resolved)
    models = model_settings()
    for name, value in (("ATELIER_LLM_PATH", models.llm_path), ("ATELIER_EMBEDDING_MODEL_PATH", models.embedding_model_path),
                        ("ATELIER_WHISPER_MODEL_PATH", models.whisper_model_path)):
        if value:  # the graph reads them again in the state dir the server changes into
            os.environ[name] = str(Path(value).resolve())
    reset_settings()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return resolved


def state_dir(data_dir: Path) -> Path:
    """Where the in-memory runtime keeps its .langgraph_api/ (threads, runs, checkpoints)."""
    return Path(get_settings().api_state_dir or data_dir / "api").resolve()


def serve(host: str = "127.0.0.1", port: int = 2024, *, jobs: int | None = None, data_dir: str | None = None,
          config_path: Path | None = None, log_level: str | None = None) -> int:
    """Run the LangGraph API server (in-memory runtime) in this process until it is stopped. A setting wrong in
    form (ATELIER_API_KEYS, ATELIER_API_ADMINS ...) stops it here with SettingsError, one line naming it."""
    checked_settings()
    resolved = prepare_environment(data_dir)
    config = load_config(config_path)
    where = state_dir(resolved)
    where.mkdir(parents=True, exist_ok=True)
    os.chdir(where)  # before langgraph_runtime_inmem is imported: it opens ./.langgraph_api at import time
    jobs = jobs or get_settings().api_jobs or 8
    print(f"Atelier API on http://{host}:{port} (data {resolved}, threads in {where / '.langgraph_api'}, {jobs} concurrent runs)",
          file=sys.stderr, flush=True)
    # The runtime's own body cap (langgraph_api.route.ApiRequest), read when langgraph_api.config is imported:
    # a chunked body with no Content-Length is cut off at the same size RequestGuard checks.
    os.environ.setdefault("HTTP_MAX_REQUEST_BODY_BYTES", str(max_body_bytes()))
    from langgraph_api.cli import run_server

    run_server(host, port, reload=False, graphs=config["graphs"], n_jobs_per_worker=jobs, open_browser=False,
               auth=config.get("auth"), http=config.get("http"), store=config.get("store"),
               checkpointer=config.get("checkpointer"), ui=config.get("ui"), webhooks=config.get("webhooks"),
               # Sync graph nodes run in worker threads; blocking checks (blockbuster) would only flag the
               # dev runtime, never the production image, so run like production.
               allow_blocking=True,
               server_level=(log_level or get_settings().api_log_level).upper())
    return 0


def served_app(data_dir: str | None = None, config_path: Path | None = None):
    """The Starlette app serve() would run — built by langgraph_api.server in serve()'s environment — without
    listening: for auditing its route table (`python -m agent.api.server --routes`). Changes this process's cwd and
    environment as serve() does."""
    import importlib

    import uvicorn

    built: dict[str, Any] = {}

    def build_only(target, **_kwargs):
        module, _, name = target.partition(":")
        built["app"] = getattr(importlib.import_module(module), name)

    serve_for_real, uvicorn.run = uvicorn.run, build_only
    try:
        serve(data_dir=data_dir, config_path=config_path)
    finally:
        uvicorn.run = serve_for_real
    return built["app"]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m agent.api.server", description="Run the Atelier LangGraph API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2024)
    parser.add_argument("--jobs", type=int, help="runs executed at once (default ATELIER_API_JOBS or 8)")
    parser.add_argument("--data-dir", help="data dir (default ATELIER_DATA_DIR or ./data)")
    parser.add_argument("--routes", action="store_true",
                        help="print the server's whole route table as JSON (method, path, access: open | caller | denied) and exit")
    args = parser.parse_args(argv)
    try:
        if args.routes:
            table = route_table(served_app(data_dir=args.data_dir))
            print(json.dumps([{"method": m, "path": p, "access": route_access("GET" if m == "*" else m, p) or "denied"}
                              for m, p in table], indent=1))
            return 0
        return serve(args.host, args.port, jobs=args.jobs, data_dir=args.data_dir)
    except SettingsError as exc:
        print(f"atelier serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
