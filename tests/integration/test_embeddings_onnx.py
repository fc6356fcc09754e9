"""The torch-free embedding path: MiniLM exported to ONNX gives the sentence-transformers vectors, and the
CLI, tools and memory import nothing heavy until a command needs it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli_env

SENTENCES = [
    "a glowing dragon standing on a cliff at sunset", "a brass owl automaton", "now make it 3D",
    "make one like before but with wings", "the castle from last Thursday", "hi", "thanks!", "",
    "a cozy cabin in a snowy forest, warm light in the windows, smoke from the chimney",
    "Ünïcödé: café, naïve, 東京タワー, 🎉", "no 3d please, just the image", "show me the dragon I made earlier",
    "the castle from last Thursday " * 60,  # past the 256-token limit: both truncate the same way
]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """A fresh export (the function `atelier setup` runs), not whatever ./models holds."""
    from memory.embeddings import export_onnx

    return export_onnx(tmp_path_factory.mktemp("onnx") / "minilm.onnx", force=True)


def test_onnx_export_matches_sentence_transformers(onnx_file, data_dir):
    from memory.embeddings import OnnxEmbedder, SentenceTransformerEmbedder
    from models.registry import embedding_model_path

    folder = embedding_model_path()
    onnx, st = OnnxEmbedder(onnx_file, folder / "tokenizer.json"), SentenceTransformerEmbedder(folder)
    a, b = onnx.encode(SENTENCES), st.encode(SENTENCES)
    assert a.shape == b.shape == (len(SENTENCES), 384) and a.dtype == np.float32
    cosine = (a * b).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(SENTENCES, cosine.round(5)))
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # one at a time (no padding) equals the padded batch
    single = np.stack([onnx.encode([s])[0] for s in SENTENCES])
    assert (single * a).sum(axis=1).min() >= 0.9999
    # and nearest neighbours come out in the same order
    assert (np.argsort(-(a @ a.T), axis=1)[:, :3] == np.argsort(-(b @ b.T), axis=1)[:, :3]).all()


def test_backend_choice(onnx_file, data_dir, monkeypatch, tmp_path):
    from memory.embeddings import load_embedder
    from models.registry import ModelMissing
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_EMBEDDING_ONNX_PATH", str(onnx_file))
    reset_settings()
    assert load_embedder().backend == "onnx"
    monkeypatch.setenv("ATELIER_EMBEDDING_ONNX_PATH", str(tmp_path / "absent.onnx"))
    reset_settings()
    assert load_embedder().backend == "sentence-transformers"  # the fallback when setup has not exported
    with pytest.raises(ModelMissing, match="atelier setup"):
        load_embedder("onnx")
    monkeypatch.setenv("ATELIER_EMBEDDING_BACKEND", "tensorflow")
    reset_settings()
    with pytest.raises(ValueError, match="ATELIER_EMBEDDING_BACKEND"):
        load_embedder()


PROBE = """
import json, sys
{body}
print(json.dumps({{m: m in sys.modules for m in ("torch", "sentence_transformers", "transformers", "llama_cpp", "chromadb")}}))
"""


def _loaded_modules(tmp_path, body: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], cwd=ROOT, env=cli_env(tmp_path / "data", **env),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_tools_and_memory_loads_nothing_heavy(tmp_path):
    loaded = _loaded_modules(tmp_path, "import agent.cli, agent.graph, tools.tools, memory.store, memory.recall, memory.vectors")
    assert not any(loaded.values()), loaded
    loaded = _loaded_modules(tmp_path, "from agent.cli import main\ntry:\n    main(['recall', '--help'])\nexcept SystemExit:\n    pass")
    assert not any(loaded.values()), loaded


def test_recall_with_the_onnx_export_never_imports_torch(onnx_file, tmp_path):
    body = ("from agent.cli import main\n"
            "assert main(['create', 'a brass owl automaton', '--no-enhance', '--no-3d', '--policy', 'router', '--json']) == 0\n"
            "assert main(['recall', 'the owl', '--json']) == 0")
    loaded = _loaded_modules(tmp_path, body, ATELIER_EMBEDDING_ONNX_PATH=str(onnx_file))
    assert loaded["chromadb"] and not loaded["torch"] and not loaded["sentence_transformers"], loaded
