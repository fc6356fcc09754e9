"""Long-term memory: creations in SQL (the truth), asset files by content hash, a Chroma index for meaning.

A creation is committed atomically: asset files are written to a temp name and renamed into place (so
no half-written file is ever visible), then the rows go in one transaction; if that fails, the files
this call added are removed again. The vector index is updated after the commit and can always be
rebuilt from SQL.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from agent.settings import Settings, get_settings
from tools.backends.base import GeneratedAsset

from .models import Asset, Base, CreationRecord, Prompt, VectorEmbedding, new_id
from .validation import validate_user_id
from .vectors import VectorIndex
from . import embeddings

log = logging.getLogger("atelier.memory")

EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf", "model/obj": ".obj", "model/ply": ".ply", "video/mp4": ".mp4", "video/webm": ".webm",
}


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

    def to_dict(self) -> dict:
        return asdict(self)


def validate_user(user_id: str) -> str:
    return validate_user_id(user_id)  # the one user-id rule (memory/validation.py); raises ValueError


class MemoryStore:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.assets_dir = self.data_dir / "assets"
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        url = self.settings.sqlalchemy_url
        self.engine = create_engine(url, pool_pre_ping=True, **({"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}))
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_schema(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.index = VectorIndex(persist_dir=self.data_dir / "chroma", url=self.settings.chroma_url)
        self._index_checked = False
        self._index_lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------------------
    def create(self, *, user_id: str, thread_id: str | None, original_prompt: str, enhanced_prompt: str,
               assets: Iterable[GeneratedAsset], parent_id: str | None = None, creation_id: str | None = None) -> CreationView:
        user_id = validate_user(user_id)
        assets = list(assets)
        if not assets:
            raise ValueError("a creation needs at least one asset")
        started = time.perf_counter()
        self._ensure_index_quietly()  # repair a stale index before adding to it, not after
        creation_id = creation_id or new_id()
        written, rows = self._write_files(assets)
        try:
            with self.sessions.begin() as session:
                if parent_id and session.get(CreationRecord, parent_id) is None:
                    parent_id = None  # a remix of something that no longer exists is just a creation
                record = CreationRecord(id=creation_id, user_id=user_id, thread_id=thread_id, parent_id=parent_id,
                                        status=_status(rows))
                record.prompt = Prompt(original=original_prompt, enhanced=enhanced_prompt)
                record.assets = rows
                session.add(record)
        except Exception:
            self._remove_unreferenced(written)
            raise
        view = self.get(creation_id)
        assert view is not None
        self._index([view])
        log.info("step=commit creation=%s user=%s assets=%s seconds=%.3f", creation_id, user_id,
                 ",".join(a.kind for a in assets), time.perf_counter() - started)
        return view

    def add_assets(self, creation_id: str, user_id: str, assets: Iterable[GeneratedAsset]) -> CreationView:
        """Attach more assets (the 3D model made later from the image) to an existing creation."""
        assets = list(assets)
        written, rows = self._write_files(assets)
        try:
            with self.sessions.begin() as session:
                record = session.get(CreationRecord, creation_id)
                if record is None or record.user_id != user_id:
                    raise LookupError(f"no creation {creation_id} for this user")
                record.assets.extend(rows)
                record.status = _status(record.assets)
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
                    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(asset.data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, target)  # atomic: readers see the whole file or nothing
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
            records = session.scalars(select(CreationRecord).where(CreationRecord.id.in_(ids), CreationRecord.user_id == user_id))
            return {r.id: self._view(r) for r in records}

    def _view(self, record: CreationRecord) -> CreationView:
        return CreationView(
            id=record.id, user_id=record.user_id, thread_id=record.thread_id, parent_id=record.parent_id,
            created_at=_utc(record.created_at).isoformat(), status=record.status,
            original_prompt=record.prompt.original if record.prompt else "",
            enhanced_prompt=record.prompt.enhanced if record.prompt else "",
            assets=[AssetView(kind=a.kind, path=str(self.data_dir / a.path), rel_path=a.path, sha256=a.sha256, mime=a.mime,
                              backend=a.backend, bytes=a.bytes, meta=a.meta or {}) for a in record.assets],
        )

    # -- vector index -------------------------------------------------------------------------------
    def _index(self, views: list[CreationView]) -> None:
        try:  # create() repaired the index before the insert; here only the new rows go in
            self.index.add([(v.id, _index_text(v), {"user_id": v.user_id, "created_ts": v.created.timestamp()}) for v in views])
            with self.sessions.begin() as session:
                for v in views:
                    exists = session.scalar(select(VectorEmbedding).where(VectorEmbedding.creation_id == v.id,
                                                                          VectorEmbedding.model_name == embeddings.MODEL_NAME))
                    if exists is None:
                        session.add(VectorEmbedding(creation_id=v.id, model_name=embeddings.MODEL_NAME, dim=embeddings.DIM, chroma_id=v.id))
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
                    if self.index.count() == self.count():
                        return
                except Exception as exc:
                    log.warning("step=check_index status=unreadable reason=%s", exc)
            self._index_checked = True
            try:
                have = self.index.ids()
            except Exception as exc:
                log.warning("step=check_index status=unreadable reason=%s", exc)
                self.index.reset()
                have = set()
            with self.sessions() as session:
                want = set(session.scalars(select(CreationRecord.id)))
            missing = want - have
            if missing or (have - want):
                log.info("step=check_index missing=%d stale=%d action=repair", len(missing), len(have - want))
                self.index.delete(sorted(have - want))
                self._reindex_ids(sorted(missing))

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
        for start in range(0, len(ids), 64):
            batch = ids[start:start + 64]
            with self.sessions() as session:
                views = [self._view(r) for r in session.scalars(select(CreationRecord).where(CreationRecord.id.in_(batch)))]
            self.index.add([(v.id, _index_text(v), {"user_id": v.user_id, "created_ts": v.created.timestamp()}) for v in views])
            with self.sessions.begin() as session:
                for v in views:
                    if session.scalar(select(VectorEmbedding).where(VectorEmbedding.creation_id == v.id)) is None:
                        session.add(VectorEmbedding(creation_id=v.id, model_name=embeddings.MODEL_NAME, dim=embeddings.DIM, chroma_id=v.id))
            if progress:
                progress(len(batch))

    def semantic(self, text: str, user_id: str, limit: int, since: datetime | None = None, until: datetime | None = None) -> list[tuple[str, float]]:
        self.ensure_index()
        return self.index.query(text, user_id, limit, since.timestamp() if since else None, until.timestamp() if until else None)


def _create_schema(engine, attempts: int = 5) -> None:
    """create_all, tolerating another process creating the same tables at the same moment (the chat and the API
    server, or two replicas, starting on an empty database): the loser's CREATE fails ("already exists" on SQLite,
    a duplicate pg_type row on Postgres); create_all checks first, so the retry is a no-op."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def _index_text(view: CreationView) -> str:
    # The original idea carries the user's words; the enhanced prompt adds style words they may search by.
    return f"{view.original_prompt}. {view.enhanced_prompt}"


def _status(rows) -> str:
    kinds = {r.kind for r in rows}
    return "complete" if {"image", "model"} <= kinds else ("image_ready" if "image" in kinds else "model_only")


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


def get_store(settings: Settings | None = None) -> MemoryStore:
    """One store per (data dir, database url) per process."""
    settings = settings or get_settings()
    key = f"{Path(settings.data_dir).resolve()}|{settings.sqlalchemy_url}|{settings.chroma_url}"
    with _stores_lock:
        if key not in _stores:
            _stores[key] = MemoryStore(settings)
        return _stores[key]
