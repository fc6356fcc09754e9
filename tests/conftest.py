"""Shared test set-up: offline, and never writing into the repository's ./data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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
    from agent.settings import get_settings

    path = tmp_path / "data"
    monkeypatch.setenv("ATELIER_DATA_DIR", str(path))
    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "relief")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


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
