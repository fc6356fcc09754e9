# Atelier: `make run` installs everything and starts the studio; `make test` runs the test suite.
SHELL := /bin/bash
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
PORT ?= 7860

.PHONY: setup run chat terminal serve test test-fast lint bench lock clean-venv

setup:
	bash scripts/bootstrap.sh

run: setup
	.venv/bin/atelier chat --host 0.0.0.0 --port $(PORT)

terminal: setup
	.venv/bin/atelier chat --terminal

serve: setup
	.venv/bin/atelier serve --host 0.0.0.0

test: setup
	bash scripts/test.sh

# Only the unit tests (tests/unit, in-process; markers from the folder, tests/conftest.py): seconds, not the suite's minutes.
test-fast: setup
	bash scripts/test.sh -m unit

# ruff, as CI runs it (scripts/test.sh; configuration in pyproject.toml [tool.ruff]).
lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python benchmarks/run_all.py

# Re-resolve the dependency set, the dev extra (pytest, selenium) included, and write requirements.lock (then
# `make setup` builds a new cached venv).
lock:
	python3.11 -m venv /tmp/atelier-lock && /tmp/atelier-lock/bin/pip install -q -c constraints.txt -e '.[dev]' && \
	/tmp/atelier-lock/bin/pip freeze --exclude-editable | grep -v '^-e' | grep -viE '^($$(grep -E '^[a-z]' requirements-nodeps.txt | cut -d= -f1 | paste -sd'|'))==' > requirements.lock && rm -rf /tmp/atelier-lock
