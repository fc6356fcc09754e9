"""Long-term memory: creations in SQL (the truth), asset files by content hash, a Chroma index for meaning.

A creation is committed atomically: asset files are written to a temp name and renamed into place (so
no half-written file is ever visible), then the rows go in one transaction; if that fails, the files
this call added are removed again (and so is the temp file of a write that failed, e.g. on a full disk). The
vector index is updated after the commit and can always be rebuilt from SQL.

A creation made by a run's tool call carries that call's idempotency key: a replayed run (a server restarted after
kill -9 re-runs its unfinished runs) finds the creation instead of writing a second one. Its status says what
happened: in_progress while a run works on it (a lease: this process, until when), then complete, image_only,
failed (with a reason) or, when the process died or the lease ran out first, interrupted. docs/durability.md.

MemoryStore is the facade every caller uses. This module holds what it does itself — opening the store,
committing creations and their files, forgetting them; the rest of its jobs are parts it is made of:
memory/leases.py (status and leases), memory/queries.py (reading), memory/index_upkeep.py (the Chroma index),
memory/schema.py (tables and migration), memory/sqlite.py (pragmas), memory/views.py (what it hands out).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import create_engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from . import embeddings, sqlite
from .index_upkeep import IndexUpkeep, embedder_thread
from .leases import Leases, lease_broken, process_token
from .models import Asset, CreationRecord, Prompt, new_id
from .queries import Queries
from .schema import create_schema, ensure_indexes
from .settings import MemorySettings, get_settings
from .types import GeneratedAsset
from .validation import validate_user_id
from .vectors import VectorIndex
from .views import STATUSES, AssetView, CreationView, Texts, index_text, jsonable, status_of

__all__ = ["STATUSES", "AssetView", "CreationView", "MemoryStore", "get_store", "lease_broken", "process_token", "validate_user"]

log = logging.getLogger("atelier.memory")

EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf", "model/obj": ".obj", "model/ply": ".ply", "video/mp4": ".mp4", "video/webm": ".webm",
    "image/gif": ".gif", "text/plain": ".txt",  # kinds tools add (a turntable GIF, a caption)
}
TEMP_PREFIX = ".tmp-"  # asset files being written; a failed write removes its own, start-up sweeps stale ones
STALE_TEMP_SECONDS = 600  # older than this no writer is still busy with it (writes take well under a second)


def validate_user(user_id: str) -> str:
    return validate_user_id(user_id)  # the one user-id rule (memory/validation.py); raises ValueError


class MemoryStore(Leases, Queries, IndexUpkeep):
    def __init__(self, settings: MemorySettings | None = None):
        self.settings = settings or get_settings()
        self.data_dir = Path(self.settings.data_dir).resolve()
        self.assets_dir = self.data_dir / "assets"
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        url = self.settings.sqlalchemy_url
        self.engine = create_engine(url, pool_pre_ping=True, **sqlite.engine_kwargs(url))
        sqlite.listen(self.engine)
        create_schema(self.engine)
        self._quietly("add_indexes", lambda: ensure_indexes(self.engine))  # (user_id, created_at) on old databases
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.index = VectorIndex(persist_dir=self.data_dir / "chroma", url=self.settings.chroma_url)
        self._index_checked = False
        self._index_lock = threading.Lock()
        # SQL's counts for the index check before every recall and commit (two COUNTs, ~35 ms at 100k), kept while
        # the index's epoch says no other process wrote; our own writes adjust them (counting_writes).
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
        vector = embedder_thread().submit(embeddings.embed, [index_text(Texts(original_prompt, enhanced_prompt))])
        try:
            written, rows = self.write_files(assets)
        except Exception:
            vector.cancel()
            raise
        try:
            with self.counting_writes() as delta, self.sessions.begin() as session:
                if parent_id and session.get(CreationRecord, parent_id) is None:
                    parent_id = None  # a remix of something that no longer exists is just a creation
                record = CreationRecord(id=creation_id, user_id=user_id, thread_id=thread_id, parent_id=parent_id,
                                        status="in_progress" if in_progress else status_of(rows), idempotency_key=idempotency_key)
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
        view = self.view(record)  # all of it is in hand after the commit (expire_on_commit=False): no read back
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
        written, rows = self.write_files(assets)
        if idempotency_key is not None:
            for n, row in enumerate(rows):
                row.idempotency_key = f"{idempotency_key}#{n}"
        try:
            with self.sessions.begin() as session:
                record = session.get(CreationRecord, creation_id)
                if record is None or record.user_id != user_id:
                    raise LookupError(f"no creation {creation_id} for this user")
                record.assets.extend(rows)
                record.status, record.status_reason = status_of(record.assets), None
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

    def write_files(self, assets: list[GeneratedAsset]) -> tuple[list[Path], list[Asset]]:
        """Write asset files content-addressed (temp name, fsync, rename); the rows for them, not yet added.
        The files this call added are listed so a failed transaction can remove them (memory/bulk.py uses it too)."""
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
                                  backend=asset.backend, bytes=len(asset.data), meta=jsonable(asset.metadata)))
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

    # -- forgetting ---------------------------------------------------------------------------------
    def forget(self, creation_id: str, user_id: str) -> dict | None:
        """Remove one of the user's creations: its rows (prompt, assets, vector rows), its vector, and the asset
        files no other creation uses. Its remixes stay, without a parent. None (and nothing changed) when there
        is no such creation for this user: another user's id looks the same as an unknown one."""
        started = time.perf_counter()
        with self.counting_writes() as delta, self.sessions.begin() as session:
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
            self._index_stale()
            log.warning("step=forget_vector creation=%s status=failed reason=%s", creation_id, exc)
        log.info("step=forget creation=%s user=%s files_removed=%d files_kept=%d remixes_orphaned=%d seconds=%.3f",
                 creation_id, user_id, len(removed), len(kept), orphaned, time.perf_counter() - started)
        return {"id": creation_id, "user_id": user_id, "files_removed": removed, "files_kept": kept, "remixes_orphaned": orphaned}


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
