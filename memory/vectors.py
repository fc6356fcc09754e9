"""Chroma index over creation prompts. It is derived data: SQLite is the truth, and the index can always be
rebuilt from it (`atelier reindex`, or automatically when it is missing or unreadable)."""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

from . import embeddings

log = logging.getLogger("atelier.vectors")

COLLECTION = "creations"


class VectorIndex:
    def __init__(self, persist_dir: Path | None = None, url: str | None = None):
        self.persist_dir = persist_dir
        self.url = url
        self._lock = threading.Lock()
        self._collection = None

    # -- connection -------------------------------------------------------------------------------
    def _client(self):
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
        if self.url:
            from urllib.parse import urlparse

            parsed = urlparse(self.url)
            return chromadb.HttpClient(host=parsed.hostname, port=parsed.port or 8000, ssl=parsed.scheme == "https", settings=chroma_settings)
        assert self.persist_dir is not None
        self.persist_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.persist_dir), settings=chroma_settings)

    def collection(self):
        with self._lock:
            if self._collection is None:
                try:
                    self._collection = self._open()
                except Exception as exc:  # corrupt on-disk index: start afresh, the store re-fills it
                    if self.url or self.persist_dir is None:
                        raise
                    log.warning("step=open_index status=corrupt reason=%s action=rebuild", exc)
                    self._wipe()
                    self._collection = self._open()
            return self._collection

    def _open(self):
        # Embeddings are always passed in explicitly: Chroma's default embedding function would try to
        # download a model, which fails offline.
        collection = self._client().get_or_create_collection(
            COLLECTION, embedding_function=None, metadata={"hnsw:space": "cosine", "embedding_model": embeddings.MODEL_NAME}
        )
        collection.count()  # touch it, so a broken index fails here rather than mid-request
        return collection

    def _wipe(self) -> None:
        # Chroma keeps one client per path per process; forget it, or the broken files stay open.
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        if self.persist_dir is not None:
            shutil.rmtree(self.persist_dir, ignore_errors=True)

    def reset(self) -> None:
        with self._lock:
            self._collection = None
            try:
                self._client().delete_collection(COLLECTION)
            except Exception:
                if self.persist_dir is not None and not self.url:
                    self._wipe()

    def _call(self, fn):
        """Run fn(collection); if another process rebuilt or wrote the index meanwhile (`atelier reindex`, the
        chat beside the API server), the handle we hold is stale: reopen once and retry."""
        try:
            return fn(self.collection())
        except Exception as exc:
            text = str(exc)
            # Embedded Chroma also goes stale when another process (the chat) wrote: "Error finding id".
            if "does not exist" not in text and not (not self.url and "Error finding id" in text):
                raise
            log.info("step=index status=stale reason=%s action=reopen", text[:120])
            with self._lock:
                self._collection = None
                if not self.url:  # Chroma caches one system per path per process; drop it to re-read the files
                    from chromadb.api.shared_system_client import SharedSystemClient

                    SharedSystemClient.clear_system_cache()
            return fn(self.collection())

    # -- data ------------------------------------------------------------------------------------------
    def upsert(self, items: list[tuple[str, str, dict]]) -> None:
        """items: (creation_id, text, metadata with user_id and created_ts)."""
        if not items:
            return
        vectors = embeddings.embed([text for _, text, _ in items])
        self._call(lambda c: c.upsert(
            ids=[cid for cid, _, _ in items],
            documents=[text for _, text, _ in items],
            metadatas=[meta for _, _, meta in items],
            embeddings=[v.tolist() for v in vectors],
        ))

    def delete(self, ids: list[str]) -> None:
        if ids:
            self._call(lambda c: c.delete(ids=ids))

    def count(self) -> int:
        return self._call(lambda c: c.count())

    def ids(self) -> set[str]:
        return set(self._call(lambda c: c.get(include=[])["ids"]))

    def query(self, text: str, user_id: str, limit: int, since_ts: float | None = None, until_ts: float | None = None) -> list[tuple[str, float]]:
        """(creation_id, cosine similarity) best first, only this user's creations."""
        clauses: list[dict] = [{"user_id": user_id}]
        if since_ts is not None:
            clauses.append({"created_ts": {"$gte": since_ts}})
        if until_ts is not None:
            clauses.append({"created_ts": {"$lt": until_ts}})
        where = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        vector = embeddings.embed_one(text)

        def query(collection):
            n = min(limit, max(collection.count(), 1))
            return collection.query(query_embeddings=[vector], n_results=n, where=where, include=["distances"])

        result = self._call(query)
        ids = result["ids"][0] if result["ids"] else []
        distances = result["distances"][0] if result.get("distances") else [1.0] * len(ids)
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances)]
