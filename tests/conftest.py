"""Shared test set-up: offline, and never writing into the repository's ./data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(ROOT))
# The shared helpers (servers, fakes, tiny model builders) and data live in tests/support; tests import them by name.
SUPPORT = TESTS / "support"
sys.path.insert(0, str(SUPPORT))

# Tests prove that nothing reaches for a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"


@pytest.fixture(scope="session", autouse=True)
def _session_data_dir(tmp_path_factory):
    """A default data dir for the whole run, so no test writes into ./data by accident."""
    if "ATELIER_DATA_DIR" not in os.environ:
        os.environ["ATELIER_DATA_DIR"] = str(tmp_path_factory.mktemp("atelier-data"))
    yield


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh data dir with offline backends; settings re-read so everything uses it."""
    from models.settings import reset_settings

    path = tmp_path / "data"
    monkeypatch.setenv("ATELIER_DATA_DIR", str(path))
    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "relief")
    reset_settings()
    yield path
    reset_settings()


@pytest.fixture
def store(data_dir):
    from memory.store import MemoryStore

    return MemoryStore()


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update({"ATELIER_DATA_DIR": str(data_dir), "ATELIER_IMAGE_BACKENDS": "sketch", "ATELIER_MODEL_BACKENDS": "relief",
                "PYTHONPATH": str(ROOT), "ATELIER_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where browser tests save screenshots: docs/screenshots when ATELIER_UI_UPDATE_SCREENSHOTS=1, else a temp dir."""
    if os.environ.get("ATELIER_UI_UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path_factory.mktemp("screenshots")


# -- test levels: `pytest -m unit` (fast, in-process), `-m integration`, `-m e2e`; `make test` runs all ----------
# The folder is the level: tests/e2e (a browser, the API server, compose), tests/integration (real llama.cpp, Chroma,
# Postgres, Whisper or subprocesses), tests/unit (in-process, seconds). A test anywhere else fails the collection,
# so a new file can never count as unit by accident.
LEVELS = ("unit", "integration", "e2e")


def level_of(path: Path) -> str | None:
    """The level of a test file from its folder under tests/ (None when it is in none of them)."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in LEVELS else None


def pytest_collection_modifyitems(config, items):
    misplaced = sorted({str(item.path) for item in items if level_of(item.path) is None})
    if misplaced:
        raise pytest.UsageError(f"tests outside tests/unit, tests/integration, tests/e2e (move them into one): {misplaced}")
    for item in items:
        item.add_marker(getattr(pytest.mark, level_of(item.path)))


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Every test starts and ends with settings read from the environment it sees (each layer caches its own)."""
    from models.settings import reset_settings

    reset_settings()
    yield
    reset_settings()
