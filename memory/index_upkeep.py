"""Keeping the Chroma index in step with SQL (the truth): indexing new creations, the check before every recall and
commit that repairs a missing, corrupt or stale index, `atelier reindex`, and semantic search over it.

IndexUpkeep is a part of MemoryStore (memory/store.py); it needs the store's `index`, `sessions`, `settings`,
`view` and `count`, and the state MemoryStore.__init__ sets up (_index_checked, _index_lock, _sql_counted,
_sql_writes_in_flight, _sql_counts_lock)."""
from __future__ import annotations

import functools
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import func, select

from . import embeddings
from .bulk import index_ids
from .models import CreationRecord, VectorEmbedding
from .vectors import IndexRebuilt
from .views import CreationView, index_text

log = logging.getLogger("atelier.memory")


@functools.cache
def embedder_thread() -> ThreadPoolExecutor:
    """Where a commit's vector is computed while its files and rows are written."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-embed")


class IndexUpkeep:
    def _index(self, views: list[CreationView], vectors: Future | None = None) -> None:
        """vectors: the embeddings of the views' index texts being computed (create), else they are computed here."""
        try:  # create() repaired the index before the insert; here only the new rows go in
            self.index.add([(v.id, index_text(v), {"user_id": v.user_id, "created_ts": v.created.timestamp()}) for v in views],
                           vectors=None if vectors is None else vectors.result())
            with self.counting_writes() as delta, self.sessions.begin() as session:
                have = set(session.scalars(select(VectorEmbedding.creation_id).where(
                    VectorEmbedding.creation_id.in_([v.id for v in views]), VectorEmbedding.model_name == embeddings.MODEL_NAME)))
                for v in views:
                    if v.id not in have:
                        session.add(VectorEmbedding(creation_id=v.id, model_name=embeddings.MODEL_NAME, dim=embeddings.DIM, chroma_id=v.id))
                        delta["vector_rows"] += 1
        except Exception as exc:  # the record is safe in SQL; the index catches up on the next check
            log.warning("step=index status=failed creations=%s reason=%s", ",".join(v.id for v in views), exc)

    def _ensure_index_quietly(self) -> None:
        try:
            self.ensure_index()
        except Exception as exc:
            log.warning("step=check_index status=failed reason=%s", exc)

    def _index_stale(self) -> None:
        """Check the whole index at the next ensure_index (a write to it failed, or it was found corrupt)."""
        with self._index_lock:
            self._index_checked = False

    def ensure_index(self) -> None:
        """Rebuild the index when it is missing, unreadable or out of step with SQL. The full comparison of ids
        runs on first use and whenever the counts differ (another process may have written meanwhile: embedded
        Chroma does not merge two processes' writes, SQL does)."""
        with self._index_lock:
            if self._index_checked:
                try:
                    # a creation whose vector_embeddings row is missing (its index step failed half-way) counts too
                    vectors, epoch = self.index.count_and_epoch()
                    if (vectors, vectors) == self._sql_counts(epoch):
                        return
                except Exception as exc:
                    log.warning("step=check_index status=unreadable reason=%s", exc)
            self._index_checked = True
            with self._sql_counts_lock:
                self._sql_counted = None  # a repair follows, or the counts disagreed: count afresh next time
            try:
                have = self.index.ids()
            except IndexRebuilt:  # it was really corrupt and is empty now; a full disk etc. raises IndexUnavailable
                have = set()
            with self.sessions() as session:
                want = set(session.scalars(select(CreationRecord.id)))
                rowless = want - set(session.scalars(select(VectorEmbedding.creation_id)))
            missing = want - have
            if missing or (have - want) or rowless:
                log.info("step=check_index missing=%d stale=%d without_row=%d action=repair", len(missing), len(have - want), len(rowless))
                self.index.delete(sorted(have - want))
                self._reindex_ids(sorted(missing | rowless))  # add() skips ids Chroma has; the rows are added

    def _vector_row_count(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count(func.distinct(VectorEmbedding.creation_id)))) or 0)

    def _sql_counts(self, epoch: int | None) -> tuple[int, int]:
        """(creations, creations with a vector row) in SQL. Counted afresh only when the index's epoch moved (another
        process wrote: its commit goes to SQL before its vector, and its vector write is what moves our epoch) or
        after a write of ours that could not be accounted for. With a Chroma server (epoch None) or a database of its
        own (ATELIER_DATABASE_URL: writers on other hosts never touch our lock file) every call counts. A process
        that dies between its SQL commit and its vector leaves a creation the others index at their next check
        after any index write, or when they start."""
        with self._sql_counts_lock:
            cacheable = epoch is not None and self.settings.database_url is None
            if cacheable and self._sql_counted is not None and self._sql_counted[0] == epoch:
                return self._sql_counted[1], self._sql_counted[2]
            counts = (self.count(), self._vector_row_count())
            # a write of ours between its commit and its bookkeeping would be counted twice: keep nothing then
            self._sql_counted = (epoch, *counts) if cacheable and not self._sql_writes_in_flight else None
            return counts

    @contextmanager
    def counting_writes(self):
        """Around a transaction that adds creations or vector rows (the store's own, memory/bulk.py's): the body
        says how many (delta), and the kept SQL counts move by that once it has committed; "recount" (or any
        exception) drops them instead."""
        delta = {"creations": 0, "vector_rows": 0, "recount": False}
        with self._sql_counts_lock:
            self._sql_writes_in_flight += 1
        ok = False
        try:
            yield delta
            ok = True
        finally:
            with self._sql_counts_lock:
                self._sql_writes_in_flight -= 1
                if not ok or delta["recount"]:
                    self._sql_counted = None
                elif self._sql_counted is not None:
                    epoch, creations, rows = self._sql_counted
                    self._sql_counted = (epoch, creations + delta["creations"], rows + delta["vector_rows"])

    def reindex(self, progress=None) -> int:
        """Drop the index and rebuild it from SQL. Returns how many creations were indexed."""
        self.index.reset()
        with self._index_lock:
            self._index_checked = True
        with self.sessions() as session:
            ids = list(session.scalars(select(CreationRecord.id)))
        self._reindex_ids(ids, progress)
        return len(ids)

    def _reindex_ids(self, ids: list[str], progress=None) -> None:
        index_ids(self, ids, progress)  # batched: one transaction and one Chroma write per 256 creations

    def semantic(self, text: str, user_id: str, limit: int, since: datetime | None = None, until: datetime | None = None) -> list[tuple[str, float]]:
        self.ensure_index()
        window = (since.timestamp() if since else None, until.timestamp() if until else None)
        try:
            return self.index.query(text, user_id, limit, *window)
        except IndexRebuilt:  # found corrupt while searching: refill from SQL, then search again
            self._index_stale()
            self.ensure_index()
            return self.index.query(text, user_id, limit, *window)
