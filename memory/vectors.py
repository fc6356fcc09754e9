"""Chroma index over creation prompts. It is derived data: SQLite is the truth, and the index can always be
rebuilt from it (`atelier reindex`, or automatically when it is missing or really corrupt).

One Chroma collection per user. Recall always asks within one user's creations; with one shared collection
Chroma answered that through a metadata pre-filter (`where user_id = ...`) that costs ~20 ms per 10k matching
records and then searched the graph with an allow-list, which at 100k records was 20x slower than an unfiltered
query (benchmarks/recall_scale.py). A collection per user needs no filter at all."""
from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import embeddings
from .settings import get_settings

log = logging.getLogger("atelier.vectors")

LEGACY_COLLECTION = "creations"  # the single shared collection of earlier versions; migrated on first open
USER_COLLECTION_PREFIX = "creations-u-"

# HNSW settings, chosen with benchmarks/recall_scale.py. ef_search 128 / ef_construction 200: no filter is involved
# any more (a collection per user), and the graph then finds what exact search finds for every planted query.
# sync_threshold 100 (Chroma's default is 1000): until a collection's graph is written out, every add and query
# re-reads the pending part of Chroma's SQLite log, ~0.15 ms per pending vector (a commit into a user with 900
# pending vectors took 140 ms); writing the graph out costs ~0.3 s at 90k vectors, so not on every commit either.
HNSW_CONFIGURATION = {"space": "cosine", "ef_search": 128, "ef_construction": 200, "max_neighbors": 16,
                      "sync_threshold": 100, "batch_size": 100}
# A time-windowed recall ("last Thursday") with at most this many of the user's creations in the window is
# answered by exact search over their stored vectors: a graph search restricted to a small allow-list can miss.
EXACT_WINDOW_LIMIT = 5000
# A user with at most this many vectors is searched exactly, over a copy of their vectors this process keeps
# (loaded once per generation, 1.5 MB per 1000 vectors; ~20 ms per query at 100k on 2 cores). Measured with
# benchmarks/recall_scale.py, the HNSW graph is not good enough for recall: a query in other words than any stored
# prompt lands on a plateau of many similar prompts, and at 90k vectors the graph returned the planted record first
# for 0 of 10 queries where exact search found 9; and over many similar prompts some vectors get no in-links at all
# (about 1 in 2000 in tests/integration/test_recall_scale.py, whatever M and ef_construction), so no search can return them.
# Above the limit (and with a Chroma server, whose other writers we cannot hear of) the graph is used.
# (memory/settings.py recall_exact_limit, ATELIER_RECALL_EXACT_LIMIT)
ADD_BATCH = 1000  # below Chroma's max batch size; one graph write per batch


class IndexUnavailable(RuntimeError):
    """The index cannot be used now (disk full, no permission, read-only, locked, an I/O error). Its files are kept
    as they are; the next call tries again."""


class IndexRebuilt(RuntimeError):
    """The embedded index was really corrupt and has been started afresh: the caller refills it from SQL."""


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EBUSY,
                       errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EFBIG}
# What SQLite and Chroma say for the same conditions when no errno reaches Python.
_ENVIRONMENT_WORDS = ("disk is full", "no space left", "readonly database", "read-only", "permission denied",
                      "unable to open database file", "database is locked", "disk i/o error", "too many open files",
                      "operation not permitted", "file too large", "cannot allocate memory", "quota")
# What they say for files that are there but unreadable as an index (found by truncating and overwriting each
# file of a real index: tests/integration/test_recall_scale.py).
_CORRUPT_WORDS = ("malformed", "file is not a database", "error loading hnsw index", "hnswindexloaderror",
                  "deserializ", "invalid persisted hnsw header", "corrupt", "failed to fill whole buffer",
                  "unexpected end of file", "unexpected eof", "error finding id",
                  "error getting embedding")


def classify_error(exc: BaseException) -> str:
    """'environment' (retry later, keep the files), 'corrupt' (rebuild from SQL) or 'other' (keep the files)."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    if any(isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS for e in chain) or any(w in text for w in _ENVIRONMENT_WORDS):
        return "environment"
    if any(w in text for w in _CORRUPT_WORDS):
        return "corrupt"
    return "other"


class IndexCorrupt(RuntimeError):
    """A self-check found the embedded index answering wrongly (its message says "corrupt": it is rebuilt)."""


def _self_check(collection) -> None:
    """Chroma loads some damaged graph files without a word (a truncated header.bin) and then answers with
    nonsense. So on opening a user's collection, one stored vector must find itself (a few ms, once per open)."""
    probe = collection.get(limit=1, include=["embeddings"])
    if not probe["ids"]:
        return
    hit = collection.query(query_embeddings=[probe["embeddings"][0]], n_results=min(5, collection.count()), include=["distances"])
    found = dict(zip(hit["ids"][0], hit["distances"][0])) if hit["ids"] else {}
    if probe["ids"][0] not in found or found[probe["ids"][0]] > 1e-3:
        raise IndexCorrupt(f"corrupt graph: a stored vector ({probe['ids'][0]}) does not find itself")


def user_collection_name(user_id: str) -> str:
    # Chroma names allow [a-zA-Z0-9._-] only; user ids are any text up to 128 characters.
    return USER_COLLECTION_PREFIX + hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:40]


class _Handle:
    def __init__(self):
        self.lock = threading.RLock()
        self.client = None
        self.collections: dict[str, object] = {}  # user id -> open collection
        self.generation = b""  # the generation the open client has seen
        self.counts: dict[str, int] | None = None  # user id -> vectors, valid for `generation`
        # How many times this process found that another one had written (or its handle was reset): what the
        # store keys its own cached SQL counts by, so a recall or a commit costs no SQL count while nobody else wrote.
        self.epoch = 0
        # user id -> their vectors for exact search; a collection dropped and made anew (`atelier reindex` here or in
        # another process) has another Chroma id, so its copy is not trusted
        self.exact: dict[str, ExactCopy] = {}
        self.migrated = False
        self.wrote = False  # something changed the files under a read (migration, rebuild): tell the others


@functools.cache
def _chroma_settings():
    # Built once (a pydantic-settings object costs ~15 ms) and copied per client.
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=True)


_handles: dict[str, _Handle] = {}
_handles_lock = threading.Lock()


class VectorIndex:
    """Embedded Chroma is not process-safe: each process keeps its own in-memory HNSW graphs, so a long-lived
    process (the API server) misses what another (the chat) wrote, and may write a stale graph back.
    Here every embedded operation holds a lock file beside the folder, and a write bumps a generation number
    kept in the lock file; a process that finds another generation than the one it last saw reopens its handle,
    re-reading the files (Chroma replays from its SQLite log whatever its graph files lack). Its own writes do
    not make it reopen (that cost ~0.26 s per commit at 100k): its graph is then the newest there is, and what it
    has not written out yet is in the log. It never writes a stale graph back: Chroma writes a graph only while
    adding to it (every sync_threshold vectors), never on close, and a process adds only under the lock after
    reopening if anyone else wrote. A Chroma server (url) needs none of this."""

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

        # A copy each time: Chroma's clients write their mode into the settings object they are given (the
        # server's address, is_persistent, the folder), and a process may hold a server client and folders at once.
        chroma_settings = _chroma_settings().model_copy()
        if self.url:
            from urllib.parse import urlparse

            parsed = urlparse(self.url)
            return chromadb.HttpClient(host=parsed.hostname, port=parsed.port or 8000, ssl=parsed.scheme == "https", settings=chroma_settings)
        assert self.persist_dir is not None
        self.persist_dir.mkdir(parents=True, exist_ok=True)
        try:
            return chromadb.PersistentClient(path=str(self.persist_dir), settings=chroma_settings)
        except Exception:
            # Chroma registers the folder's system before starting it and keeps a system that failed to start;
            # every later client for the folder would get that broken one ("no attribute 'bindings'").
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient._identifier_to_system.pop(str(self.persist_dir), None)
            raise

    def _client(self):
        if self._handle.client is None:
            self._handle.client = self._connect()
            if not self._handle.migrated:
                self._migrate_legacy()
                self._handle.migrated = True
        return self._handle.client

    def _user_collection(self, user_id: str, create: bool = False):
        """The user's open collection, or None when they have none yet (and create is False)."""
        collection = self._handle.collections.get(user_id)
        if collection is None:
            client = self._client()
            name = user_collection_name(user_id)
            if create:
                collection = client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": dict(HNSW_CONFIGURATION)},
                    metadata={"user_id": user_id, "embedding_model": embeddings.MODEL_NAME})
            else:
                try:
                    collection = client.get_collection(name, embedding_function=None)
                except Exception as exc:
                    if "does not exist" in str(exc) or type(exc).__name__ == "NotFoundError":
                        return None
                    raise
            if self._lock_path is not None:
                _self_check(collection)
            self._handle.collections[user_id] = collection
        return collection

    def _user_collections(self) -> dict[str, object]:
        """user id -> collection, every user that has one."""
        out = {}
        for collection in self._client().list_collections():
            if collection.name.startswith(USER_COLLECTION_PREFIX):
                user_id = (collection.metadata or {}).get("user_id")
                if user_id is not None:
                    out[user_id] = self._handle.collections.setdefault(user_id, collection)
        return out

    def _migrate_legacy(self) -> None:
        """Move the vectors of the one shared collection of earlier versions into per-user collections (no
        re-embedding), then drop it. Runs under the lock, once per process."""
        client = self._handle.client
        try:
            legacy = client.get_collection(LEGACY_COLLECTION, embedding_function=None)
        except Exception:
            return
        started = time.perf_counter()
        moved = 0
        while True:
            batch = legacy.get(limit=ADD_BATCH, include=["embeddings", "metadatas", "documents"])
            if not batch["ids"]:
                break
            by_user: dict[str, list[int]] = {}
            for i, meta in enumerate(batch["metadatas"]):
                by_user.setdefault(str((meta or {}).get("user_id", "")), []).append(i)
            for user_id, rows in by_user.items():
                if not user_id:
                    continue
                self._user_collection(user_id, create=True).add(
                    ids=[batch["ids"][i] for i in rows], embeddings=np.asarray(batch["embeddings"])[rows],
                    metadatas=[batch["metadatas"][i] for i in rows], documents=[batch["documents"][i] for i in rows])
            legacy.delete(ids=batch["ids"])
            moved += len(batch["ids"])
        client.delete_collection(LEGACY_COLLECTION)
        self._handle.wrote = True
        log.info("step=migrate_index moved=%d seconds=%.2f", moved, time.perf_counter() - started)

    def _close(self) -> None:
        client, self._handle.client = self._handle.client, None
        self._handle.collections = {}
        self._handle.counts = None
        self._handle.epoch += 1  # whatever was counted before may be out of date now
        # The exact copies stay: _exact() checks them against the fresh counts and fetches only what is new.
        if client is not None:
            try:
                client.close()  # the last handle on a folder stops Chroma's system
            except Exception as exc:
                log.warning("step=close_index status=failed reason=%s", exc)

    @contextmanager
    def _exclusive(self, writes: bool = False):
        with self._handle.lock:
            if self._lock_path is None:
                yield
                return
            try:
                self._lock_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise IndexUnavailable(f"vector index lock {self._lock_path}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                generation = os.pread(fd, 64, 0)
                if generation != self._handle.generation:
                    self._close()  # another process wrote: our in-memory graphs are stale
                    self._handle.generation = generation
                try:
                    yield
                finally:
                    if writes or self._handle.wrote:
                        # Tell the other processes; we have seen our own write (nothing of it is unsaved).
                        self._handle.generation = uuid.uuid4().hex.encode()
                        self._handle.wrote = False
                        os.pwrite(fd, self._handle.generation, 0)
            finally:
                os.close(fd)  # releases the lock

    def _call(self, fn, writes: bool = False):
        """Run fn() under the lock, sorting failures: a Chroma server's collection can be dropped and made anew by
        another process (`atelier reindex`), so a stale handle is reopened once; a full disk, a permission or an
        I/O error raises IndexUnavailable and leaves every file alone; only a really corrupt embedded index is
        started afresh (IndexRebuilt: the store refills it from SQL)."""
        with self._exclusive(writes):
            try:
                try:
                    return fn()
                except Exception as exc:
                    if "does not exist" not in str(exc):
                        raise
                    log.info("step=index status=stale reason=%s action=reopen", str(exc)[:120])
                    self._close()
                    return fn()
            except (IndexUnavailable, IndexRebuilt):
                raise
            except Exception as exc:
                kind = classify_error(exc)
                self._close()  # whatever it was, the next call starts from the files again
                if kind == "corrupt" and self._lock_path is not None:
                    self._rebuild(exc)
                    raise IndexRebuilt(f"the vector index was corrupt ({str(exc)[:200]}) and was started afresh") from exc
                if kind == "other" and not isinstance(exc, OSError) and type(exc).__module__.split(".")[0] != "chromadb":
                    raise  # a bug of ours or bad input, not the index's state
                log.warning("step=index status=unavailable kind=%s reason=%s action=keep_files", kind, str(exc)[:300])
                raise IndexUnavailable(f"the vector index is unavailable ({str(exc)[:300]}); its files were kept and "
                                       "the next request retries") from exc

    def _rebuild(self, exc: BaseException) -> None:
        """Start the embedded index afresh. The corrupt folder is moved aside first and only deleted once a fresh
        one opens, so a rebuild that cannot even start (the disk filled up meanwhile) puts it back."""
        assert self.persist_dir is not None
        aside = self.persist_dir.with_name(f"{self.persist_dir.name}.corrupt-{uuid.uuid4().hex[:8]}")
        log.warning("step=open_index status=corrupt reason=%s action=rebuild", str(exc)[:300])
        try:
            if self.persist_dir.exists():
                os.replace(self.persist_dir, aside)
            self._client()
        except Exception as again:
            self._close()
            if aside.exists():
                shutil.rmtree(self.persist_dir, ignore_errors=True)
                os.replace(aside, self.persist_dir)
            raise IndexUnavailable(f"the vector index is corrupt and could not be rebuilt now ({again}); kept") from again
        shutil.rmtree(aside, ignore_errors=True)
        self._handle.wrote = True

    def reset(self) -> None:
        """Drop every vector (`atelier reindex`)."""
        def drop():
            client = self._client()
            for collection in client.list_collections():
                if collection.name.startswith(USER_COLLECTION_PREFIX) or collection.name == LEGACY_COLLECTION:
                    client.delete_collection(collection.name)
            self._handle.collections = {}
            self._handle.counts = {}
            self._handle.exact = {}

        try:
            self._call(drop, writes=True)
        except IndexRebuilt:
            pass  # a corrupt folder was replaced by an empty one: what reset wanted

    # -- data ------------------------------------------------------------------------------------------
    def add(self, items: list[tuple[str, str, dict]], vectors: np.ndarray | None = None) -> int:
        """items: (creation_id, text, metadata with user_id and created_ts); vectors: their embeddings when the
        caller has them (bulk import), else they are computed here. Ids already in the index are left alone: a
        creation's text never changes, and re-adding a vector makes hnswlib update it in place, which can leave it
        unreachable by search. Returns how many were new."""
        if not items:
            return 0
        if vectors is None:
            vectors = embeddings.embed([text for _, text, _ in items])
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(items), embeddings.DIM):
            raise ValueError(f"expected {len(items)} vectors of {embeddings.DIM} numbers, got shape {vectors.shape}")
        by_user: dict[str, list[int]] = {}
        for i, (_, _, meta) in enumerate(items):
            by_user.setdefault(meta["user_id"], []).append(i)

        def add_new():
            added = 0
            for user_id, rows in by_user.items():
                collection = self._user_collection(user_id, create=True)
                for start in range(0, len(rows), ADD_BATCH):
                    chunk = rows[start:start + ADD_BATCH]
                    have = set(collection.get(ids=[items[i][0] for i in chunk], include=[])["ids"])
                    new = [i for i in chunk if items[i][0] not in have]
                    if new:
                        collection.add(ids=[items[i][0] for i in new], documents=[items[i][1] for i in new],
                                       metadatas=[items[i][2] for i in new], embeddings=vectors[new])
                        added += len(new)
                        copy = self._handle.exact.get(user_id)
                        if copy is not None and copy.collection_id == str(collection.id):
                            copy.append([items[i][0] for i in new], vectors[new],
                                        [float(items[i][2].get("created_ts", 0.0)) for i in new])
                        if self._handle.counts is not None:
                            self._handle.counts[user_id] = self._handle.counts.get(user_id, 0) + len(new)
            return added

        return self._call(add_new, writes=True)

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return

        def delete():
            for collection in self._user_collections().values():
                collection.delete(ids=list(ids))
            self._handle.counts = None
            self._handle.exact = {}

        self._call(delete, writes=True)

    def _counts(self) -> dict[str, int]:
        if self._handle.counts is None or self._lock_path is None:  # a server may be written by anyone: ask
            self._handle.counts = {user_id: c.count() for user_id, c in self._user_collections().items()}
        return self._handle.counts

    def count(self, user_id: str | None = None) -> int:
        """Vectors in the index (of one user). Embedded: counted once per generation, kept up to date by our own
        writes, so the store's check before each commit and recall costs no Chroma call."""
        return self.count_and_epoch(user_id)[0]

    def count_and_epoch(self, user_id: str | None = None) -> tuple[int, int | None]:
        """count() and, read under the same lock, the handle's epoch: it changes whenever this process learns that
        another one wrote (or reopens for any reason), never for its own writes. None for a Chroma server, whose
        other writers are not announced: a caller must not keep anything across calls then."""
        def read():
            counts = self._counts()
            return (sum(counts.values()) if user_id is None else counts.get(user_id, 0),
                    self._handle.epoch if self._lock_path is not None else None)

        return self._call(read)

    def ids(self) -> set[str]:
        def all_ids():
            out: set[str] = set()
            for collection in self._user_collections().values():
                out.update(get_all(collection, [], page=30000)["ids"])
            return out

        return self._call(all_ids)

    def unreachable(self) -> list[str]:
        """Ids the graph cannot reach: queried with its own embedding, within its user's collection, each vector
        must come back first. An integrity check for tests and benchmarks."""
        def check():
            bad = []
            for collection in self._user_collections().values():
                stored = get_all(collection, ["embeddings"])
                for cid, vector in zip(stored["ids"], stored["embeddings"]):
                    if collection.query(query_embeddings=[vector], n_results=1, include=[])["ids"][0] != [cid]:
                        bad.append(cid)
            return bad

        return self._call(check)

    def query(self, text: str, user_id: str, limit: int, since_ts: float | None = None, until_ts: float | None = None) -> list[tuple[str, float]]:
        """(creation_id, cosine similarity) best first, only this user's creations."""
        return self.query_vector(embeddings.embed_query(text), user_id, limit, since_ts, until_ts)

    def query_vector(self, vector, user_id: str, limit: int, since_ts: float | None = None,
                     until_ts: float | None = None) -> list[tuple[str, float]]:
        vector = np.asarray(vector, dtype=np.float32)
        clauses: list[dict] = []
        if since_ts is not None:
            clauses.append({"created_ts": {"$gte": since_ts}})
        if until_ts is not None:
            clauses.append({"created_ts": {"$lt": until_ts}})
        where = None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}

        def query():
            collection = self._user_collection(user_id)
            if collection is None:
                return []
            exact = self._exact(user_id, collection)
            if exact is not None:
                return exact.search(vector, limit, since_ts, until_ts)
            if where is not None:
                window = collection.get(where=where, limit=EXACT_WINDOW_LIMIT + 1, include=["embeddings"])
                if len(window["ids"]) <= EXACT_WINDOW_LIMIT:
                    if not window["ids"]:
                        return []
                    scores = np.asarray(window["embeddings"], dtype=np.float32) @ vector
                    best = np.argsort(-scores)[:limit]
                    return [(window["ids"][i], float(scores[i])) for i in best]
            count = self._counts().get(user_id, 0) if self._lock_path is not None else collection.count()
            n = min(limit, max(count, 1))
            result = collection.query(query_embeddings=[vector], n_results=n, where=where, include=["distances"])
            ids = result["ids"][0] if result["ids"] else []
            distances = result["distances"][0] if result.get("distances") else [1.0] * len(ids)
            return [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances)]

        return self._call(query)

    def _exact(self, user_id: str, collection) -> ExactCopy | None:
        """The user's vectors for exact search, or None above the exact-search limit or for a server (whose writers
        we cannot hear of)."""
        if self._lock_path is None:
            return None
        copy = self._handle.exact.get(user_id)
        if copy is not None and copy.collection_id != str(collection.id):
            copy = None
        count = self._counts().get(user_id, 0)
        if copy is not None and len(copy) != count:
            copy = self._exact_catch_up(user_id, collection, copy, count)
        if copy is None:
            self._handle.exact.pop(user_id, None)
            if count > get_settings().recall_exact_limit:
                return None
            started = time.perf_counter()
            # page by page into arrays sized for them: the whole collection as Chroma's row lists first would
            # hold the vectors twice more (and leave the process's memory that much bigger for good)
            copy = ExactCopy(str(collection.id), [], np.empty((0, embeddings.DIM), dtype=np.float32), np.empty(0), reserve=count)
            for page in get_pages(collection, ["embeddings", "metadatas"]):
                copy.append(*_exact_rows(page))
            self._handle.exact[user_id] = copy
            log.info("step=load_exact user_vectors=%d seconds=%.3f", len(copy), time.perf_counter() - started)
        return copy

    def _exact_catch_up(self, user_id: str, collection, copy: ExactCopy, count: int) -> ExactCopy | None:
        """Another process added to this user: fetch only the vectors newer than our copy's newest. If that does not
        account for the new count (something was deleted), None: the caller loads the copy afresh."""
        self._handle.exact.pop(user_id, None)
        newer = get_all(collection, ["embeddings", "metadatas"], where={"created_ts": {"$gte": copy.newest()}})
        known = set(copy.ids)
        fresh = [i for i, cid in enumerate(newer["ids"]) if cid not in known]
        if len(copy) + len(fresh) != count:
            return None
        copy.append(*_exact_rows({"ids": [newer["ids"][i] for i in fresh], "embeddings": [newer["embeddings"][i] for i in fresh],
                                  "metadatas": [newer["metadatas"][i] for i in fresh]}))
        self._handle.exact[user_id] = copy
        log.info("step=catch_up_exact user_vectors=%d added=%d", len(copy), len(fresh))
        return copy


def get_pages(collection, include: list[str], where: dict | None = None, page: int = 10000):
    """collection.get() in pages: one call for 90k records fails in Chroma 1.5 ("too many SQL variables")."""
    offset = 0
    while True:
        got = collection.get(where=where, include=include, limit=page, offset=offset)
        yield {"ids": got["ids"], **{key: got[key] if got[key] is not None else [] for key in include}}
        if len(got["ids"]) < page:
            return
        offset += page


def get_all(collection, include: list[str], where: dict | None = None, page: int = 10000) -> dict:
    out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
    for got in get_pages(collection, include, where, page):
        out["ids"].extend(got["ids"])
        for key in include:
            out[key].extend(got[key])
    return out


def _exact_rows(stored: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    matrix = np.asarray(stored["embeddings"], dtype=np.float32).reshape(len(stored["ids"]), embeddings.DIM)
    created = np.asarray([float((m or {}).get("created_ts", 0.0)) for m in stored["metadatas"]], dtype=np.float64)
    return list(stored["ids"]), matrix, created


class ExactCopy:
    """One user's vectors, ids and creation times, kept by this process for exact search. It has room to grow: a
    commit writes its vector into the spare rows (np.vstack copied all 138 MB at 90k vectors: 110 ms of a 170 ms
    commit); when they are used up, the arrays grow by an eighth at once."""

    def __init__(self, collection_id: str, ids: list[str], matrix: np.ndarray, created: np.ndarray, reserve: int = 0):
        """reserve: how many vectors are about to be appended (a load page by page): room for them is made at once."""
        self.collection_id = collection_id  # the Chroma collection it copies
        self.ids: list[str] = []
        capacity = max(reserve, len(ids))
        capacity += max(1024, capacity // 8)  # room for commits to come
        self._matrix = np.empty((capacity, embeddings.DIM), dtype=np.float32)
        self._created = np.empty(capacity, dtype=np.float64)
        self.append(ids, matrix, created)

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: list[str], matrix, created) -> None:
        n, extra = len(self.ids), len(ids)
        if n + extra > len(self._matrix):
            capacity = n + extra + max(1024, (n + extra) // 8)
            grown = np.empty((capacity, embeddings.DIM), dtype=np.float32)
            grown[:n] = self._matrix[:n]
            grown_created = np.empty(capacity, dtype=np.float64)
            grown_created[:n] = self._created[:n]
            self._matrix, self._created = grown, grown_created
        self._matrix[n:n + extra] = np.asarray(matrix, dtype=np.float32).reshape(extra, embeddings.DIM)
        self._created[n:n + extra] = np.asarray(created, dtype=np.float64)
        self.ids.extend(ids)

    def newest(self) -> float:
        return float(self._created[:len(self.ids)].max()) if self.ids else float("-inf")

    def search(self, vector: np.ndarray, limit: int, since_ts: float | None = None,
               until_ts: float | None = None) -> list[tuple[str, float]]:
        n = len(self.ids)
        if n == 0 or limit < 1:
            return []
        scores = self._matrix[:n] @ vector
        if since_ts is not None or until_ts is not None:
            created = self._created[:n]
            if since_ts is not None:
                scores[created < since_ts] = -np.inf
            if until_ts is not None:
                scores[created >= until_ts] = -np.inf
        # the best `limit` without sorting all n (a full argsort of 90k scores is 1-10 ms), then those in order
        top = np.argpartition(-scores, limit - 1)[:limit] if limit < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top if np.isfinite(scores[i])]
