"""Chroma index over creation prompts. It is derived data: SQLite is the truth, and the index can always be
rebuilt from it (`atelier reindex`, or automatically when it is missing or unreadable)."""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from . import embeddings

log = logging.getLogger("atelier.vectors")

COLLECTION = "creations"


class _Handle:
    def __init__(self):
        self.lock = threading.RLock()
        self.client = None
        self.collection = None
        self.generation = b""  # the generation the open client has seen


@functools.cache
def _chroma_settings():
    # Built once: a pydantic-settings object costs ~15 ms, and embedded handles are reopened after each write.
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=True)


_handles: dict[str, _Handle] = {}
_handles_lock = threading.Lock()


class VectorIndex:
    """Embedded Chroma is not process-safe: each process keeps its own in-memory HNSW graph, so a long-lived
    process (the API server) misses what another (the chat) wrote, and may write a stale graph back.
    Here every embedded operation holds a lock file beside the folder; a write closes the handle before the
    lock is released (everything reaches disk, nothing unsaved stays in memory) and bumps a generation number
    kept in the lock file; a process that finds another generation reopens its handle, re-reading the files.
    A Chroma server (url) needs none of this."""

    def __init__(self, persist_dir: Path | None = None, url: str | None = None):
        self.persist_dir = persist_dir
        self.url = url
        self._lock_path = persist_dir.parent / f"{persist_dir.name}.lock" if persist_dir is not None and not url else None
        # One handle per folder per process: two stores on one folder share Chroma's system anyway, so they
        # must share what we know of it too (the lock, the generation seen).
        key = str(self._lock_path.resolve()) if self._lock_path else f"{url}#{id(self)}"
        with _handles_lock:
            self._handle = _handles.setdefault(key, _Handle())

    # -- connection -------------------------------------------------------------------------------
    def _connect(self):
        import chromadb

        chroma_settings = _chroma_settings()
        if self.url:
            from urllib.parse import urlparse

            parsed = urlparse(self.url)
            return chromadb.HttpClient(host=parsed.hostname, port=parsed.port or 8000, ssl=parsed.scheme == "https", settings=chroma_settings)
        assert self.persist_dir is not None
        self.persist_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(self.persist_dir), settings=chroma_settings)

    def collection(self):
        """The open collection; call it inside _exclusive()."""
        if self._handle.collection is None:
            try:
                self._handle.collection = self._open()
            except Exception as exc:  # corrupt on-disk index: start afresh, the store re-fills it
                if self._lock_path is None:
                    raise
                log.warning("step=open_index status=corrupt reason=%s action=rebuild", exc)
                self._close()
                shutil.rmtree(self.persist_dir, ignore_errors=True)
                self._handle.collection = self._open()
        return self._handle.collection

    def _open(self):
        self._handle.client = self._connect()
        # Embeddings are always passed in explicitly: Chroma's default embedding function would try to
        # download a model, which fails offline.
        collection = self._handle.client.get_or_create_collection(
            COLLECTION, embedding_function=None, metadata={"hnsw:space": "cosine", "embedding_model": embeddings.MODEL_NAME}
        )
        collection.count()  # touch it, so a broken index fails here rather than mid-request
        return collection

    def _close(self) -> None:
        client, self._handle.client, self._handle.collection = self._handle.client, None, None
        if client is not None:
            try:
                client.close()  # the last handle on a folder stops Chroma's system, which writes it out
            except Exception as exc:
                log.warning("step=close_index status=failed reason=%s", exc)

    @contextmanager
    def _exclusive(self, writes: bool = False):
        with self._handle.lock:
            if self._lock_path is None:
                yield
                return
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                generation = os.pread(fd, 64, 0)
                if generation != self._handle.generation:
                    self._close()  # another process wrote: our in-memory graph is stale
                    self._handle.generation = generation
                try:
                    yield
                finally:
                    if writes:
                        self._close()
                        self._handle.generation = uuid.uuid4().hex.encode()
                        os.pwrite(fd, self._handle.generation, 0)
            finally:
                os.close(fd)  # releases the lock

    def reset(self) -> None:
        with self._exclusive(writes=True):
            try:
                self.collection()
                self._handle.client.delete_collection(COLLECTION)
                self._handle.collection = None
            except Exception:
                if self._lock_path is None:
                    raise
                self._close()
                shutil.rmtree(self.persist_dir, ignore_errors=True)

    def _call(self, fn, writes: bool = False):
        """Run fn(collection). A Chroma server's collection can be dropped and made anew by another process
        (`atelier reindex`): then the handle we hold is stale, so reopen once and retry."""
        with self._exclusive(writes):
            try:
                return fn(self.collection())
            except Exception as exc:
                if "does not exist" not in str(exc):
                    raise
                log.info("step=index status=stale reason=%s action=reopen", str(exc)[:120])
                self._close()
                return fn(self.collection())

    # -- data ------------------------------------------------------------------------------------------
    def add(self, items: list[tuple[str, str, dict]]) -> None:
        """items: (creation_id, text, metadata with user_id and created_ts). Ids already in the index are left
        alone: a creation's text never changes, and re-adding a vector makes hnswlib update it in place, which
        can leave it unreachable by search. (The chat and the API server may both try to index one creation:
        the writer and the other's self-repair.)"""
        if not items:
            return
        vectors = embeddings.embed([text for _, text, _ in items])

        def add_new(collection):
            have = set(collection.get(ids=[cid for cid, _, _ in items], include=[])["ids"])
            new = [(item, vector) for item, vector in zip(items, vectors) if item[0] not in have]
            if new:
                collection.add(ids=[cid for (cid, _, _), _ in new], documents=[text for (_, text, _), _ in new],
                               metadatas=[meta for (_, _, meta), _ in new], embeddings=[v.tolist() for _, v in new])

        self._call(add_new, writes=True)

    def delete(self, ids: list[str]) -> None:
        if ids:
            self._call(lambda c: c.delete(ids=ids), writes=True)

    def count(self) -> int:
        return self._call(lambda c: c.count())

    def ids(self) -> set[str]:
        return set(self._call(lambda c: c.get(include=[])["ids"]))

    def unreachable(self) -> list[str]:
        """Ids the graph cannot reach: queried with its own embedding, within its user's creations (as recall
        filters), each vector must come back first. An integrity check for tests and benchmarks."""
        def check(collection):
            stored = collection.get(include=["embeddings", "metadatas"])
            return [cid for cid, vector, meta in zip(stored["ids"], stored["embeddings"], stored["metadatas"])
                    if collection.query(query_embeddings=[vector], n_results=1, where={"user_id": meta["user_id"]},
                                        include=[])["ids"][0] != [cid]]

        return self._call(check)

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
