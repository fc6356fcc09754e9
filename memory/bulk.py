"""Bulk paths for many creations at once: import (a migration, a benchmark's data set) and rebuilding the vector
index from SQL (`atelier reindex`). One transaction and one Chroma write per batch instead of per creation, and
the embedder sees whole batches.

`store` is a MemoryStore; these use its public write_files / counting_writes / view / index / sessions, and
nothing here imports memory/store.py (which imports this module for its index repair)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import insert, select

from . import embeddings
from .models import Asset, CreationRecord, Prompt, VectorEmbedding, new_id
from .types import GeneratedAsset
from .validation import validate_user_id
from .views import Texts, index_text, status_of

log = logging.getLogger("atelier.memory")

BATCH = 1000  # creations per SQL transaction
INDEX_BATCH = 10000  # creations per index write: Chroma is written per user, so many users need big batches

@dataclass
class NewCreation:
    user_id: str
    original_prompt: str
    enhanced_prompt: str
    assets: list[GeneratedAsset]
    thread_id: str | None = None
    created_at: datetime | None = None
    id: str = field(default_factory=new_id)


def import_creations(store, creations: Sequence[NewCreation], vectors: np.ndarray | None = None,
                     progress: Callable[[int], None] | None = None) -> list[str]:
    """Commit many creations: per batch, asset files first (content-addressed, so a shared file is written once),
    then the rows in one transaction, then their vectors in one Chroma write. vectors: their embeddings when the
    caller has them already (row i for creations[i]), else they are computed in batches. Returns the ids."""
    if vectors is not None and len(vectors) != len(creations):
        raise ValueError(f"{len(creations)} creations but {len(vectors)} vectors")
    for c in creations:
        c.user_id = validate_user_id(c.user_id)  # the store's one rule; the normalised id is what goes in
        if not c.assets:
            raise ValueError(f"creation {c.id}: a creation needs at least one asset")
    ids: list[str] = []
    pending: list[tuple[str, str, dict]] = []  # indexed every INDEX_BATCH creations, and at the end
    pending_from = 0
    for start in range(0, len(creations), BATCH):
        started = time.perf_counter()
        batch = creations[start:start + BATCH]
        files: dict[tuple, Asset] = {}
        for c in batch:
            for a in c.assets:
                key = (a.kind, a.mime, a.backend, a.data)
                if key not in files:
                    _, rows = store.write_files([a])
                    files[key] = rows[0]
        now = datetime.now(UTC)
        creation_rows, prompt_rows, asset_rows = [], [], []
        for c in batch:
            rows = [files[(a.kind, a.mime, a.backend, a.data)] for a in c.assets]
            creation_rows.append({"id": c.id, "user_id": c.user_id, "thread_id": c.thread_id, "parent_id": None,
                                  "created_at": c.created_at or now, "status": status_of(rows)})
            prompt_rows.append({"creation_id": c.id, "original": c.original_prompt, "enhanced": c.enhanced_prompt})
            asset_rows.extend({"creation_id": c.id, "kind": r.kind, "path": r.path, "sha256": r.sha256, "mime": r.mime,
                               "backend": r.backend, "bytes": r.bytes, "meta": r.meta, "created_at": now} for r in rows)
        with store.counting_writes() as delta, store.sessions.begin() as session:
            session.execute(insert(CreationRecord), creation_rows)
            session.execute(insert(Prompt), prompt_rows)
            session.execute(insert(Asset), asset_rows)
            delta["creations"] = len(creation_rows)
        pending += [(c.id, index_text(Texts(c.original_prompt, c.enhanced_prompt)),
                     {"user_id": c.user_id, "created_ts": (c.created_at or now).timestamp()}) for c in batch]
        if len(pending) >= INDEX_BATCH or start + BATCH >= len(creations):
            _index_batch(store, pending, None if vectors is None else vectors[pending_from:pending_from + len(pending)])
            pending_from += len(pending)
            pending = []
        ids.extend(c.id for c in batch)
        log.info("step=bulk_import creations=%d seconds=%.2f", len(batch), time.perf_counter() - started)
        if progress:
            progress(len(batch))
    return ids


def _index_batch(store, items: list[tuple[str, str, dict]], vectors: np.ndarray | None) -> None:
    store.index.add(items, vectors=vectors)
    with store.counting_writes() as delta, store.sessions.begin() as session:
        have = set(session.scalars(select(VectorEmbedding.creation_id).where(
            VectorEmbedding.creation_id.in_([cid for cid, _, _ in items]), VectorEmbedding.model_name == embeddings.MODEL_NAME)))
        rows = [{"creation_id": cid, "model_name": embeddings.MODEL_NAME, "dim": embeddings.DIM, "chroma_id": cid}
                for cid, _, _ in items if cid not in have]
        if rows:
            session.execute(insert(VectorEmbedding), rows)
            delta["vector_rows"] = len(rows)


def index_ids(store, ids: Iterable[str], progress: Callable[[int], None] | None = None, batch: int = 256) -> int:
    """(Re)index these creations from SQL in batches: what `atelier reindex` and the index repair run. Ids the
    index has already are left alone (VectorIndex.add). Returns how many were read."""
    ids = list(ids)
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        with store.sessions() as session:
            records = list(session.scalars(select(CreationRecord).where(CreationRecord.id.in_(chunk))))
            items = [(r.id, index_text(store.view(r)), {"user_id": r.user_id, "created_ts": _ts(r.created_at)}) for r in records]
        _index_batch(store, items, None)
        if progress:
            progress(len(chunk))
    return len(ids)


def _ts(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
