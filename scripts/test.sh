#!/usr/bin/env bash
# Lints the code (ruff, configured in pyproject.toml), then runs the whole suite offline. Fails loudly if ruff
# found anything or no test ran (pytest exits 5 when it collects nothing); the tests run either way, so one
# CI run reports both.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
export ATELIER_LOG_LEVEL=${ATELIER_LOG_LEVEL:-WARNING}
lint=0
if [ ! -x .venv/bin/ruff ]; then
  echo "ERROR: .venv/bin/ruff is missing (it is in the dev extra and requirements.lock): run make setup" >&2
  lint=1
elif ! .venv/bin/ruff check --no-cache --output-format concise .; then
  lint=1
fi
.venv/bin/python -m pytest -p no:cacheprovider -rs --durations=15 "$@" tests
rc=$?
if [ $rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; rc=1; fi
if [ $lint -ne 0 ]; then
  echo "ERROR: ruff check failed (listed above; 'make lint' runs it alone, '.venv/bin/ruff check --fix' fixes some)" >&2
  [ $rc -eq 0 ] && rc=1
fi
exit $rc
