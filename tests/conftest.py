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
# e2e: a browser, the API server, compose. integration: real llama.cpp, Chroma, Postgres, Whisper or subprocesses.
# A file not listed here is unit; a new file that starts a process or loads a model belongs in this table.
E2E = {"test_tool_kinds.py", "test_ui_studio.py", "test_ui_users.py", "test_ui_upload.py", "test_api_server.py", "test_api_load.py", "test_history_api.py",
       "test_api_security.py", "test_compose.py", "test_mcp.py", "test_upload.py", "test_concurrent_writers.py", "test_idempotency.py",
       "test_llm_server.py"}
INTEGRATION = {"test_cli.py", "test_graph.py", "test_enhance.py", "test_decisions.py", "test_llm_sharing.py",
               "test_model_decides.py", "test_memory.py", "test_memory_backends.py", "test_faults.py", "test_index_faults.py",
               "test_recall_scale.py", "test_speech.py", "test_embeddings_onnx.py", "test_validation.py", "test_models_cli.py",
               "test_openfabric_client.py", "test_openfabric_marshmallow.py", "test_openfabric_real.py", "test_openfabric_outbound.py",
               "test_speech_length.py",
               "test_backend_diffusers.py", "test_backend_hunyuan3d.py", "test_backend_plugins.py", "test_bootstrap.py"}


def level_of(filename: str) -> str:
    return "e2e" if filename in E2E else "integration" if filename in INTEGRATION else "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(getattr(pytest.mark, level_of(item.path.name)))


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Every test starts and ends with settings read from the environment it sees (each layer caches its own)."""
    from models.settings import reset_settings

    reset_settings()
    yield
    reset_settings()
