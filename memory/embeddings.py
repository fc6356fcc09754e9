"""The packaged all-MiniLM-L6-v2 sentence embedder, loaded once per process from disk (never from a hub)."""
from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

log = logging.getLogger("atelier.embeddings")

_lock = threading.Lock()
_model = None
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def _load():
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            from models.registry import embedding_model_path

            started = time.perf_counter()
            _model = SentenceTransformer(str(embedding_model_path()), device="cpu", local_files_only=True)
            log.info("step=load_embedder model=%s seconds=%.2f", MODEL_NAME, time.perf_counter() - started)
    return _model


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings, shape (len(texts), 384); cosine similarity is then a dot product."""
    model = _load()
    with _lock:  # the torch module is shared by every thread of the process
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def embed_one(text: str) -> list[float]:
    return embed([text])[0].tolist()
