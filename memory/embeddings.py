"""The packaged all-MiniLM-L6-v2 sentence embedder, loaded once per process from disk (never from a hub).

Two ways to run the same model, same vectors (cosine >= 0.999, tests/integration/test_embeddings_onnx.py):

- **onnx** (preferred): the model exported once by `atelier setup` (`export_onnx`) to an ONNX file under
  ./models, run by onnxruntime with the tokenizers library. No torch in the process: ~0.3 s to load and
  about a third of the memory.
- **sentence-transformers**: the fallback when the ONNX file is missing (torch, ~4 s to import and load).

ATELIER_EMBEDDING_BACKEND=auto|onnx|sentence-transformers chooses; auto takes ONNX when its file exists.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("atelier.embeddings")

_lock = threading.Lock()
_model = None
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
BACKENDS = ("auto", "onnx", "sentence-transformers")


class OnnxEmbedder:
    """MiniLM as an ONNX graph: tokenizers -> onnxruntime -> mean pooling over the attention mask -> L2."""

    backend = "onnx"

    def __init__(self, onnx_file: Path, tokenizer_file: Path):
        import onnxruntime
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch, like ST
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 2
        # No spin-waiting between operators: a recall embeds one short query (a few ms of work), and on a shared
        # 2-core box spinning threads take the cores from the very work they wait for. Measured one short query
        # per run, interleaved, 2 threads: p50 139 ms without spinning vs 211 ms with it (1 thread: 150 ms) with
        # the box at load 11 (p50 24 vs 27 ms, 1 thread 33 ms, at load 2.7).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            encodings = self.tokenizer.encode_batch(texts[start:start + batch_size])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            types = np.array([e.type_ids for e in encodings], dtype=np.int64)
            (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[start:start + len(encodings)] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out


class SentenceTransformerEmbedder:
    backend = "sentence-transformers"

    def __init__(self, folder: Path):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        with self._lock:  # the torch module is shared by every thread of the process
            vectors = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                        show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def _configured_backend() -> str:
    from models.settings import get_settings

    choice = get_settings().embedding_backend
    if choice not in BACKENDS:
        raise ValueError(f"ATELIER_EMBEDDING_BACKEND={choice!r}; choose one of {', '.join(BACKENDS)}")
    return choice


def load_embedder(backend: str | None = None):
    """A new embedder for the configured model (not cached: `embed` keeps the process's one)."""
    from models.registry import ModelMissing, embedding_model_path, embedding_onnx_path

    backend = backend or _configured_backend()
    folder = embedding_model_path()
    started = time.perf_counter()
    onnx_file = embedding_onnx_path()
    if backend == "onnx" and not onnx_file.is_file():
        raise ModelMissing(f"{onnx_file} is missing; run `atelier setup` to export the embedding model to ONNX")
    if backend in ("auto", "onnx") and onnx_file.is_file():
        model = OnnxEmbedder(onnx_file, folder / "tokenizer.json")
    else:
        model = SentenceTransformerEmbedder(folder)
    reason = "" if model.backend == "onnx" or backend != "auto" else " reason=no_onnx_file(run atelier setup)"
    log.info("step=load_embedder model=%s backend=%s seconds=%.2f%s", MODEL_NAME, model.backend,
             time.perf_counter() - started, reason)
    return model


def _load():
    global _model
    with _lock:
        if _model is None:
            _model = load_embedder()
    return _model


def backend() -> str:
    """Which backend this process embeds with ('onnx' or 'sentence-transformers'); loads it if needed."""
    return _load().backend


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings, shape (len(texts), 384); cosine similarity is then a dot product."""
    return _load().encode(list(texts))


def embed_one(text: str) -> list[float]:
    return embed([text])[0].tolist()


QUERY_CACHE_SIZE = 256  # recent query texts; a query repeated (a history search re-run, a retried turn) costs nothing


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _query_vector(text: str, backend_name: str) -> np.ndarray:
    vector = embed([text])[0]
    vector.setflags(write=False)  # shared by every caller of the same text
    return vector


def embed_query(text: str) -> np.ndarray:
    """One query's embedding (float32, read-only), from a small cache of recent query texts."""
    return _query_vector(text, backend())


def clear_query_cache() -> None:
    """Forget cached query embeddings (benchmarks measure the model, not the cache)."""
    _query_vector.cache_clear()


# -- export (at `atelier setup`; needs torch + transformers, never at run time) --------------------------
def export_onnx(target: Path | None = None, force: bool = False) -> Path:
    """Export the configured sentence-transformers folder's transformer to ONNX, once.

    Written to a temp name and renamed, so a half-written file is never taken for the model."""
    from models.registry import embedding_model_path, embedding_onnx_path

    target = Path(target) if target else embedding_onnx_path()
    if target.is_file() and not force:
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    started = time.perf_counter()
    # eager attention: the SDPA path special-cases an all-ones mask at trace time, which would bake
    # "no padding" into the graph
    model = AutoModel.from_pretrained(str(embedding_model_path()), attn_implementation="eager", local_files_only=True).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)  # one padded row
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with torch.no_grad(), _without_onnx_package_if_missing(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shapes that the export keeps dynamic
            torch.onnx.export(Hidden(model), (ids, mask, torch.zeros_like(ids)), str(tmp), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("step=export_embedder_onnx model=%s path=%s bytes=%d seconds=%.2f", MODEL_NAME, target,
             target.stat().st_size, time.perf_counter() - started)
    return target


class _without_onnx_package_if_missing:
    """torch's TorchScript exporter imports the `onnx` package only to splice onnxscript custom functions
    into the finished graph; a plain BERT has none, so without that package the graph is written as is.
    (The equivalence test checks the result against sentence-transformers.)"""

    def __enter__(self):
        import importlib.util

        self.patched = None
        if importlib.util.find_spec("onnx") is None:
            from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

            self.patched = (onnx_proto_utils, onnx_proto_utils._add_onnxscript_fn)
            onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
        return self

    def __exit__(self, *exc):
        if self.patched:
            module, original = self.patched
            module._add_onnxscript_fn = original
        return False
