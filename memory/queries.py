"""Reading creations: by id, a user's newest, remixes, counts. Every answer is a CreationView (memory/views.py).

Queries is a part of MemoryStore (memory/store.py); it needs the store's `sessions` and `data_dir`."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import lazyload

from .leases import lease_broken
from .models import Asset, CreationRecord
from .views import AssetView, CreationView, utc


class Queries:
    def view(self, record: CreationRecord) -> CreationView:
        """A loaded record as a CreationView (an in_progress one whose run is gone reads as interrupted)."""
        status, reason = record.status, record.status_reason
        if status == "in_progress" and (broken := lease_broken(record.lease_owner, record.lease_until)):
            status, reason = "interrupted", broken  # what the next recover_interrupted() will write
        return CreationView(
            id=record.id, user_id=record.user_id, thread_id=record.thread_id, parent_id=record.parent_id,
            created_at=utc(record.created_at).isoformat(), status=status, status_reason=reason,
            original_prompt=record.prompt.original if record.prompt else "",
            enhanced_prompt=record.prompt.enhanced if record.prompt else "",
            assets=[AssetView(kind=a.kind, path=str(self.data_dir / a.path), rel_path=a.path, sha256=a.sha256, mime=a.mime,
                              backend=a.backend, bytes=a.bytes, meta=a.meta or {}) for a in record.assets],
        )

    def get(self, creation_id: str, user_id: str | None = None) -> CreationView | None:
        with self.sessions() as session:
            record = session.get(CreationRecord, creation_id)
            if record is None or (user_id is not None and record.user_id != user_id):
                return None
            return self.view(record)

    def list(self, user_id: str, *, limit: int = 20, offset: int = 0, since: datetime | None = None,
             until: datetime | None = None) -> list[CreationView]:
        query = select(CreationRecord).where(CreationRecord.user_id == user_id)
        if since is not None:
            query = query.where(CreationRecord.created_at >= utc(since))
        if until is not None:
            query = query.where(CreationRecord.created_at < utc(until))
        query = query.order_by(CreationRecord.created_at.desc(), CreationRecord.id.desc()).limit(limit).offset(offset)
        with self.sessions() as session:
            return [self.view(r) for r in session.scalars(query)]

    def latest(self, user_id: str, kind: str | None = None) -> CreationView | None:
        for view in self.list(user_id, limit=50):
            if kind is None or view.asset(kind):
                return view
        return None

    def children(self, creation_id: str) -> list[CreationView]:
        with self.sessions() as session:
            query = select(CreationRecord).where(CreationRecord.parent_id == creation_id).order_by(CreationRecord.created_at)
            return [self.view(r) for r in session.scalars(query)]

    def count(self, user_id: str | None = None) -> int:
        query = select(func.count()).select_from(CreationRecord)
        if user_id is not None:
            query = query.where(CreationRecord.user_id == user_id)
        with self.sessions() as session:
            return int(session.scalar(query) or 0)

    def asset_file(self, sha256: str, user_id: str) -> tuple[str, str] | None:
        """(path relative to the data dir, mime) of the file with this content hash in one of the user's creations;
        None when the user has none (another user's asset is answered the same way, so ids cannot be probed)."""
        query = (select(Asset.path, Asset.mime).join(CreationRecord, Asset.creation_id == CreationRecord.id)
                 .where(Asset.sha256 == sha256, CreationRecord.user_id == user_id).limit(1))
        with self.sessions() as session:
            row = session.execute(query).first()
        return (row.path, row.mime) if row is not None else None

    def get_many(self, ids: list[str], user_id: str) -> dict[str, CreationView]:
        if not ids:
            return {}
        with self.sessions() as session:
            # By primary key only: with the user in the WHERE clause SQLite may walk that user's whole index. The
            # vector rows are not needed for a view (one query less per recall).
            records = session.scalars(select(CreationRecord).where(CreationRecord.id.in_(ids))
                                      .options(lazyload(CreationRecord.embeddings)))
            return {r.id: self.view(r) for r in records if r.user_id == user_id}
