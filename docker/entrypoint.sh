#!/bin/sh
# Entrypoint of the Atelier application image: `api` (LangGraph API server) or `ui` (Chainlit studio); anything
# else is run as a command. Models come from PyPI packages inside the image; runtime data lives in /data.
set -eu
mkdir -p "${ATELIER_DATA_DIR:-/data}"
case "${1:-api}" in
  api)
    shift || true
    # agent.api.server.serve is what `atelier serve` runs: the in-memory runtime keeps threads in /data/api.
    exec python -m agent.api.server --host 0.0.0.0 --port "${ATELIER_API_PORT:-2024}" "$@" ;;
  ui)
    shift || true
    exec atelier chat --host 0.0.0.0 --port "${ATELIER_UI_PORT:-7860}" "$@" ;;
  *)
    exec "$@" ;;
esac
