"""Long-term memory: creations in SQL (the truth), asset files by content hash, a Chroma index for meaning.

A creation is committed atomically: asset files are written to a temp name and renamed into place (so
no half-written file is ever visible), then the rows go in one transaction; if that fails, the files
this call added are removed again (and so is the temp file of a write that failed, e.g. on a full disk). The
vector index is updated after the commit and can always be rebuilt from SQL.

A creation made by a run's tool call carries that call's idempotency key: a replayed run (a server restarted after
kill -9 re-runs its unfinished runs) finds the creation instead of writing a second one. Its status says what
happened: in_progress while a run works on it (a lease: this process, until when), then complete, image_only,
failed (with a reason) or, when the process died or the lease ran out first, interrupted. docs/durability.md.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from sqlalchemy import create_engine, event, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import lazyload, sessionmaker

from .settings import MemorySettings, get_settings
from .types import GeneratedAsset

from .models import Asset, Base, CreationRecord, Prompt, VectorEmbedding, new_id
from .validation import validate_user_id
from .vectors import IndexRebuilt, VectorIndex
from . import embeddings

log = logging.getLogger("atelier.memory")

EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf", "model/obj": ".obj", "model/ply": ".ply", "video/mp4": ".mp4", "video/webm": ".webm",
    "image/gif": ".gif", "text/plain": ".txt",  # kinds tools add (a turntable GIF, a caption)
}
TEMP_PREFIX = ".tmp-"  # asset files being written; a failed write removes its own, start-up sweeps stale ones
STALE_TEMP_SECONDS = 600  # older than this no writer is still busy with it (writes take well under a second)
STATUSES = ("in_progress", "complete", "image_only", "model_only", "failed", "interrupted", "image_ready")


@dataclass
class AssetView:
    kind: str
    path: str  # absolute path on this machine
    rel_path: str  # relative to the data dir (what the record stores)
    sha256: str
    mime: str
    backend: str
    bytes: int
    meta: dict = field(default_factory=dict)


@dataclass
class CreationView:
    id: str
    user_id: str
    thread_id: str | None
    parent_id: str | None
    created_at: str
    status: str
    original_prompt: str
    enhanced_prompt: str
    assets: list[AssetView]
    score: float | None = None
    status_reason: str | None = None

    def asset(self, kind: str) -> AssetView | None:
        return next((a for a in reversed(self.assets) if a.kind == kind), None)

    @property
    def image(self) -> AssetView | None:
        return self.asset("image")

    @property
    def model(self) -> AssetView | None:
        return self.asset("model")

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    @property
    def kinds(self) -> list[str]:
        """The asset kinds the creation holds, in the order they were added (image, model, and any a tool adds:
        memory keeps a kind as a plain string; tools/kinds.py is the table of them)."""
        return list(dict.fromkeys(a.kind for a in self.assets))

    def to_dict(self) -> dict:
        return {**asdict(self), "kinds": self.kinds}


def validate_user(user_id: str) -> str:
    return validate_user_id(user_id)  # the one user-id rule (memory/validation.py); raises ValueError


class MemoryStore:
    def __init__(self, settings: MemorySettings | None = None):
        self.settings = settings or get_settings()
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.assets_dir = self.data_dir / "assets"
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        url = self.settings.sqlalchemy_url
        self.engine = create_engine(url, pool_pre_ping=True, **({"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_schema(self.engine)
        from .bulk import ensure_indexes

        self._quietly("add_indexes", lambda: ensure_indexes(self.engine))  # (user_id, created_at) on old databases
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.index = VectorIndex(persist_dir=self.data_dir / "chroma", url=self.settings.chroma_url)
        self._index_checked = False
        self._index_lock = threading.Lock()
        # SQL's counts for the index check before every recall and commit (two COUNTs, ~35 ms at 100k), kept while
        # the index's epoch says no other process wrote; our own writes adjust them (_counting_writes).
        self._sql_counted: tuple[int, int, int] | None = None  # (index epoch, creations, creations with a vector row)
        self._sql_writes_in_flight = 0
        self._sql_counts_lock = threading.Lock()
        # How long a run may go without a heartbeat before its in_progress creation counts as interrupted (a run
        # on another host; on this host a dead process is noticed at once).
        self.lease_seconds = self.settings.creation_lease_seconds
        self._quietly("sweep_temp_files", self.sweep_temp_files)  # what a process killed mid-write left behind
        self._quietly("recover_interrupted", self.recover_interrupted)

    def _quietly(self, step: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # housekeeping never stops the store from opening (a read-only data dir)
            log.warning("step=%s status=failed reason=%s", step, exc)

    # -- writing ------------------------------------------------------------------------------------
    def create(self, *, user_id: str, thread_id: str | None, original_prompt: str, enhanced_prompt: str,
               assets: Iterable[GeneratedAsset], parent_id: str | None = None, creation_id: str | None = None,
               idempotency_key: str | None = None, in_progress: bool = False) -> CreationView:
        """Commit a creation. With an idempotency key, a second call with the same key (a replayed tool call)
        returns the creation the first one made and writes nothing. in_progress: a run is still working on it
        (more assets to come); it holds a lease until add_assets() / fail() / settle()."""
        user_id = validate_user(user_id)
        assets = list(assets)
        if not assets:
            raise ValueError("a creation needs at least one asset")
        if idempotency_key is not None and (existing := self.find(idempotency_key, user_id)) is not None:
            log.info("step=commit creation=%s user=%s key=%s action=replayed", existing.id, user_id, idempotency_key)
            return existing
        started = time.perf_counter()
        self._ensure_index_quietly()  # repair a stale index before adding to it, not after
        creation_id = creation_id or new_id()
        # Its vector is computed while the files and rows are written (onnxruntime releases the GIL; measured: the
        # embedding is a fifth of a commit and the writes wait on the disk)
        vector = _embedder_thread().submit(embeddings.embed, [_index_text(_Texts(original_prompt, enhanced_prompt))])
        try:
            written, rows = self._write_files(assets)
        except Exception:
            vector.cancel()
            raise
        try:
            with self._counting_writes() as delta, self.sessions.begin() as session:
                if parent_id and session.get(CreationRecord, parent_id) is None:
                    parent_id = None  # a remix of something that no longer exists is just a creation
                record = CreationRecord(id=creation_id, user_id=user_id, thread_id=thread_id, parent_id=parent_id,
                                        status="in_progress" if in_progress else _status(rows), idempotency_key=idempotency_key)
                if in_progress:
                    record.lease_owner, record.lease_until = process_token(), self._lease_end()
                record.prompt = Prompt(original=original_prompt, enhanced=enhanced_prompt)
                record.assets = rows
                session.add(record)
                delta["creations"] = 1  # counted once the transaction commits (_counting_writes)
        except IntegrityError:
            self._remove_unreferenced(written)
            # two replays of one tool call at the same moment: the other one's commit won, and it is the same creation
            if idempotency_key is not None and (existing := self.find(idempotency_key, user_id)) is not None:
                return existing
            raise
        except Exception:
            self._remove_unreferenced(written)
            raise
        view = self._view(record)  # all of it is in hand after the commit (expire_on_commit=False): no read back
        self._index([view], vector)
        log.info("step=commit creation=%s user=%s assets=%s seconds=%.3f", creation_id, user_id,
                 ",".join(a.kind for a in assets), time.perf_counter() - started)
        return view

    def add_assets(self, creation_id: str, user_id: str, assets: Iterable[GeneratedAsset],
                   idempotency_key: str | None = None) -> CreationView:
        """Attach more assets (the 3D model made later from the image) to an existing creation. With an
        idempotency key, a replay of the same tool call attaches nothing more. The status becomes what the assets
        make it (complete with an image and a model), and any lease ends."""
        assets = list(assets)
        if idempotency_key is not None and (existing := self.find_assets(idempotency_key, user_id)) is not None:
            log.info("step=commit creation=%s user=%s key=%s action=replayed", existing.id, user_id, idempotency_key)
            return existing
        written, rows = self._write_files(assets)
        if idempotency_key is not None:
            for n, row in enumerate(rows):
                row.idempotency_key = f"{idempotency_key}#{n}"
        try:
            with self.sessions.begin() as session:
                record = session.get(CreationRecord, creation_id)
                if record is None or record.user_id != user_id:
                    raise LookupError(f"no creation {creation_id} for this user")
                record.assets.extend(rows)
                record.status, record.status_reason = _status(record.assets), None
                record.lease_owner = record.lease_until = None
        except IntegrityError:
            self._remove_unreferenced(written)
            if idempotency_key is not None and (existing := self.find_assets(idempotency_key, user_id)) is not None:
                return existing
            raise
        except Exception:
            self._remove_unreferenced(written)
            raise
        view = self.get(creation_id)
        assert view is not None
        log.info("step=commit creation=%s user=%s assets=%s", creation_id, user_id, ",".join(a.kind for a in assets))
        return view

    def _write_files(self, assets: list[GeneratedAsset]) -> tuple[list[Path], list[Asset]]:
        written: list[Path] = []
        rows: list[Asset] = []
        try:
            for asset in assets:
                digest = hashlib.sha256(asset.data).hexdigest()
                rel = Path("assets") / digest[:2] / (digest + EXTENSIONS.get(asset.mime, ".bin"))
                target = self.data_dir / rel
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
                    try:
                        with os.fdopen(fd, "wb") as fh:
                            fh.write(asset.data)
                            fh.flush()
                            os.fsync(fh.fileno())
                        os.replace(tmp, target)  # atomic: readers see the whole file or nothing
                    except BaseException:
                        Path(tmp).unlink(missing_ok=True)  # a full disk must not leave half a file behind
                        raise
                    written.append(target)
                rows.append(Asset(kind=asset.kind, path=rel.as_posix(), sha256=digest, mime=asset.mime,
                                  backend=asset.backend, bytes=len(asset.data), meta=_jsonable(asset.metadata)))
        except Exception:
            self._remove_unreferenced(written)
            raise
        return written, rows

    def _remove_unreferenced(self, paths: list[Path]) -> None:
        with self.sessions() as session:
            for path in paths:
                rel = path.relative_to(self.data_dir).as_posix()
                if not session.scalar(select(func.count()).select_from(Asset).where(Asset.path == rel)):
                    path.unlink(missing_ok=True)

    def sweep_temp_files(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove asset temp files left by a process that died mid-write. Only old ones: a temp file younger than
        `older_than` may belong to a writer in another process that is busy with it now."""
        cutoff, removed = time.time() - older_than, 0
        if not self.assets_dir.is_dir():
            return 0
        for shard in os.scandir(self.assets_dir):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(shard.path):
                if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                    try:
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:  # another process swept it first
                        pass
        if removed:
            log.info("step=sweep_temp_files removed=%d", removed)
        return removed

    # -- status: in_progress under a lease, then complete / image_only / failed / interrupted -------------------
    def _lease_end(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.lease_seconds)

    def find(self, idempotency_key: str, user_id: str | None = None) -> CreationView | None:
        """The creation a tool call with this key made, if it made one."""
        with self.sessions() as session:
            record = session.scalar(select(CreationRecord).where(CreationRecord.idempotency_key == idempotency_key))
            if record is None or (user_id is not None and record.user_id != user_id):
                return None
            return self._view(record)

    def find_assets(self, idempotency_key: str, user_id: str | None = None) -> CreationView | None:
        """The creation that a tool call with this key already attached assets to (add_assets)."""
        with self.sessions() as session:
            creation_id = session.scalar(select(Asset.creation_id).where(Asset.idempotency_key == f"{idempotency_key}#0"))
        return None if creation_id is None else self.get(creation_id, user_id=user_id)

    def begin_work(self, creation_id: str, user_id: str) -> None:
        """A run starts working on an existing creation (image_to_3d): in_progress under this process's lease."""
        self._set_status(creation_id, user_id, "in_progress", None, lease=True)

    def heartbeat(self, creation_id: str) -> None:
        """Extend the lease of a creation this process is working on (long generations report progress)."""
        with self.sessions.begin() as session:
            session.execute(update(CreationRecord).where(CreationRecord.id == creation_id, CreationRecord.status == "in_progress",
                                                         CreationRecord.lease_owner == process_token())
                            .values(lease_until=self._lease_end()))

    def fail(self, creation_id: str, user_id: str, reason: str) -> None:
        self._set_status(creation_id, user_id, "failed", reason[:2000])

    def settle(self, creation_id: str, user_id: str) -> str | None:
        """The run is over: a creation still in_progress is what its assets make it (complete / image_only)."""
        with self.sessions.begin() as session:
            record = session.get(CreationRecord, creation_id)
            if record is None or record.user_id != user_id:
                return None
            if record.status == "in_progress":
                record.status, record.lease_owner, record.lease_until = _status(record.assets), None, None
                log.info("step=settle creation=%s status=%s", creation_id, record.status)
            return record.status

    def _set_status(self, creation_id: str, user_id: str, status: str, reason: str | None, lease: bool = False) -> None:
        with self.sessions.begin() as session:
            record = session.get(CreationRecord, creation_id)
            if record is None or record.user_id != user_id:
                raise LookupError(f"no creation {creation_id} for this user")
            record.status, record.status_reason = status, reason
            record.lease_owner, record.lease_until = (process_token(), self._lease_end()) if lease else (None, None)
        log.info("step=status creation=%s status=%s reason=%s", creation_id, status, reason or "-")

    def recover_interrupted(self) -> int:
        """Mark creations left in_progress by a run that can no longer finish them: their process has ended (same
        host) or their lease ran out. Runs when a store opens (every process start) and is cheap (status index)."""
        marked = 0
        with self.sessions.begin() as session:
            for record in session.scalars(select(CreationRecord).where(CreationRecord.status == "in_progress")):
                reason = _lease_broken(record.lease_owner, record.lease_until)
                if reason:
                    record.status, record.status_reason, record.lease_owner, record.lease_until = "interrupted", reason, None, None
                    marked += 1
                    log.info("step=recover creation=%s status=interrupted reason=%s", record.id, reason)
        return marked

    # -- reading ------------------------------------------------------------------------------------
    def get(self, creation_id: str, user_id: str | None = None) -> CreationView | None:
        with self.sessions() as session:
            record = session.get(CreationRecord, creation_id)
            if record is None or (user_id is not None and record.user_id != user_id):
                return None
            return self._view(record)

    def list(self, user_id: str, *, limit: int = 20, offset: int = 0, since: datetime | None = None,
             until: datetime | None = None) -> list[CreationView]:
        query = select(CreationRecord).where(CreationRecord.user_id == user_id)
        if since is not None:
            query = query.where(CreationRecord.created_at >= _utc(since))
        if until is not None:
            query = query.where(CreationRecord.created_at < _utc(until))
        query = query.order_by(CreationRecord.created_at.desc(), CreationRecord.id.desc()).limit(limit).offset(offset)
        with self.sessions() as session:
            return [self._view(r) for r in session.scalars(query)]

    def latest(self, user_id: str, kind: str | None = None) -> CreationView | None:
        for view in self.list(user_id, limit=50):
            if kind is None or view.asset(kind):
                return view
        return None

    def children(self, creation_id: str) -> list[CreationView]:
        with self.sessions() as session:
            query = select(CreationRecord).where(CreationRecord.parent_id == creation_id).order_by(CreationRecord.created_at)
            return [self._view(r) for r in session.scalars(query)]

    def count(self, user_id: str | None = None) -> int:
        query = select(func.count()).select_from(CreationRecord)
        if user_id is not None:
            query = query.where(CreationRecord.user_id == user_id)
        with self.sessions() as session:
            return int(session.scalar(query) or 0)

    def get_many(self, ids: list[str], user_id: str) -> dict[str, CreationView]:
        if not ids:
            return {}
        with self.sessions() as session:
            # By primary key only: with the user in the WHERE clause SQLite may walk that user's whole index. The
            # vector rows are not needed for a view (one query less per recall).
            records = session.scalars(select(CreationRecord).where(CreationRecord.id.in_(ids))
                                      .options(lazyload(CreationRecord.embeddings)))
            return {r.id: self._view(r) for r in records if r.user_id == user_id}

    # -- forgetting ---------------------------------------------------------------------------------
    def forget(self, creation_id: str, user_id: str) -> dict | None:
        """Remove one of the user's creations: its rows (prompt, assets, vector rows), its vector, and the asset
        files no other creation uses. Its remixes stay, without a parent. None (and nothing changed) when there
        is no such creation for this user: another user's id looks the same as an unknown one."""
        started = time.perf_counter()
        with self._counting_writes() as delta, self.sessions.begin() as session:
            record = session.get(CreationRecord, creation_id)
            if record is None or record.user_id != user_id:
                return None
            delta["recount"] = True  # its row and vector row go: count afresh at the next check
            digests = {a.path: a.sha256 for a in record.assets}
            paths = sorted(digests)
            orphaned = session.execute(update(CreationRecord).where(CreationRecord.parent_id == creation_id)
                                       .values(parent_id=None)).rowcount
            session.delete(record)  # cascades to the prompt, asset and vector_embeddings rows
        removed, kept = [], []
        with self.sessions() as session:
            for rel in paths:  # content-addressed: the same bytes in another creation share the file
                if session.scalar(select(func.count()).select_from(Asset).where(Asset.path == rel)):
                    kept.append(rel)
                else:
                    (self.data_dir / rel).unlink(missing_ok=True)
                    removed.append(rel)
                    # derived copies named by the content hash (the studio's thumbnails) go with the file
                    for derived in (self.data_dir / "ui_cache").rglob(f"{digests[rel][:40]}-*"):
                        derived.unlink(missing_ok=True)
        try:
            self.index.delete([creation_id])
        except Exception as exc:  # SQL is the truth: the next index check drops a vector with no row
            with self._index_lock:
                self._index_checked = False
            log.warning("step=forget_vector creation=%s status=failed reason=%s", creation_id, exc)
        log.info("step=forget creation=%s user=%s files_removed=%d files_kept=%d remixes_orphaned=%d seconds=%.3f",
                 creation_id, user_id, len(removed), len(kept), orphaned, time.perf_counter() - started)
        return {"id": creation_id, "user_id": user_id, "files_removed": removed, "files_kept": kept, "remixes_orphaned": orphaned}

    def _view(self, record: CreationRecord) -> CreationView:
        status, reason = record.status, record.status_reason
        if status == "in_progress" and (broken := _lease_broken(record.lease_owner, record.lease_until)):
            status, reason = "interrupted", broken  # what the next recover_interrupted() will write
        return CreationView(
            id=record.id, user_id=record.user_id, thread_id=record.thread_id, parent_id=record.parent_id,
            created_at=_utc(record.created_at).isoformat(), status=status, status_reason=reason,
            original_prompt=record.prompt.original if record.prompt else "",
            enhanced_prompt=record.prompt.enhanced if record.prompt else "",
            assets=[AssetView(kind=a.kind, path=str(self.data_dir / a.path), rel_path=a.path, sha256=a.sha256, mime=a.mime,
                              backend=a.backend, bytes=a.bytes, meta=a.meta or {}) for a in record.assets],
        )

    # -- vector index -------------------------------------------------------------------------------
    def _index(self, views: list[CreationView], vectors: Future | None = None) -> None:
        """vectors: the embeddings of the views' index texts being computed (create), else they are computed here."""
        try:  # create() repaired the index before the insert; here only the new rows go in
            self.index.add([(v.id, _index_text(v), {"user_id": v.user_id, "created_ts": v.created.timestamp()}) for v in views],
                           vectors=None if vectors is None else vectors.result())
            with self._counting_writes() as delta, self.sessions.begin() as session:
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
    def _counting_writes(self):
        """Around a transaction of ours that adds creations or vector rows: the body says how many (delta), and the
        kept SQL counts move by that once it has committed; "recount" (or any exception) drops them instead."""
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
        from .bulk import index_ids  # batched: one transaction and one Chroma write per 256 creations

        index_ids(self, ids, progress)

    def semantic(self, text: str, user_id: str, limit: int, since: datetime | None = None, until: datetime | None = None) -> list[tuple[str, float]]:
        self.ensure_index()
        window = (since.timestamp() if since else None, until.timestamp() if until else None)
        try:
            return self.index.query(text, user_id, limit, *window)
        except IndexRebuilt:  # found corrupt while searching: refill from SQL, then search again
            with self._index_lock:
                self._index_checked = False
            self.ensure_index()
            return self.index.query(text, user_id, limit, *window)


def _create_schema(engine, attempts: int = 5) -> None:
    """create_all, tolerating another process creating the same tables at the same moment (the chat and the API
    server, or two replicas, starting on an empty database): the loser's CREATE fails ("already exists" on SQLite,
    a duplicate pg_type row on Postgres); create_all checks first, so the retry is a no-op."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            _add_missing_columns(engine)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _add_missing_columns(engine) -> None:
    """Bring a database made by an earlier version up to the models: create_all makes missing tables but never
    touches existing ones, so add each missing column (all added columns are nullable) and each missing index.
    An old data/atelier.db opens as it is; nothing is rewritten. (Two processes migrating at once: the loser's
    ALTER fails and _create_schema's retry finds the column there.)"""
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        with engine.begin() as conn:
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}'))
                log.info("step=migrate table=%s column=%s type=%s", table.name, column.name, kind)
                if column.unique:  # create_all puts UNIQUE in CREATE TABLE; an added column gets a unique index
                    conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS uq_{table.name}_{column.name} ON {table.name} ({column.name})"))
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(conn, checkfirst=True)


_HOST = socket.gethostname()


def _start_ticks(pid: int) -> str | None:
    """When process pid started (clock ticks since boot, /proc/<pid>/stat field 22): a pid reused by a later
    process has another start time. None where there is no /proc for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_token() -> str:
    """Who holds a lease: host, pid and start time of this process."""
    return f"{_HOST}:{os.getpid()}:{_start_ticks(os.getpid()) or ''}"


def _lease_broken(owner: str | None, until: datetime | None) -> str | None:
    """Why an in_progress creation can no longer be finished by its run, or None while it still may be."""
    host, _, rest = (owner or "").partition(":")
    pid, _, ticks = rest.partition(":")
    if host == _HOST and pid.isdigit() and ticks and _start_ticks(int(pid)) != ticks:  # gone, or pid reused
        return f"the process working on it (pid {pid}) ended before it finished"
    if until is None or _utc(until) < datetime.now(timezone.utc):
        return "its run stopped reporting (lease expired)" if until is not None else "no run holds it"
    return None


@dataclass
class _Texts:  # what _index_text reads, before there is a view
    original_prompt: str
    enhanced_prompt: str


@functools.cache
def _embedder_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-embed")


def _index_text(view: CreationView) -> str:
    # The original idea carries the user's words; the enhanced prompt adds style words they may search by.
    return f"{view.original_prompt}. {view.enhanced_prompt}"


def _status(rows) -> str:
    kinds = {r.kind for r in rows}
    return "complete" if {"image", "model"} <= kinds else ("image_only" if "image" in kinds else "model_only")


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; we always store UTC
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the chat process and the API server read while one of them writes; busy_timeout makes a
    # second writer wait for the lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def get_store(settings: MemorySettings | None = None) -> MemoryStore:
    """One store per (data dir, database url) per process."""
    settings = settings or get_settings()
    key = f"{Path(settings.data_dir).resolve()}|{settings.sqlalchemy_url}|{settings.chroma_url}"
    with _stores_lock:
        if key not in _stores:
            _stores[key] = MemoryStore(settings)
        return _stores[key]
