#!/usr/bin/env bash
# Runs the whole suite offline and fails loudly if no test ran (pytest exits 5 when it collects nothing).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False
export ATELIER_LOG_LEVEL=${ATELIER_LOG_LEVEL:-WARNING}
.venv/bin/python -m pytest -p no:cacheprovider -rs --durations=15 "$@" tests
rc=$?
if [ $rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi
exit $rc
