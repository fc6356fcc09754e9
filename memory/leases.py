"""Creation status while a run works on it: in_progress under a lease (this process, until when), then complete /
image_only / failed, or interrupted when the process died or the lease ran out first (docs/durability.md).

Leases is a part of MemoryStore (memory/store.py); it needs the store's `sessions`, `lease_seconds`, `view` and
`get`."""
from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from .models import Asset, CreationRecord
from .views import CreationView, status_of, utc

log = logging.getLogger("atelier.memory")

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


def lease_broken(owner: str | None, until: datetime | None) -> str | None:
    """Why an in_progress creation can no longer be finished by its run, or None while it still may be."""
    host, _, rest = (owner or "").partition(":")
    pid, _, ticks = rest.partition(":")
    if host == _HOST and pid.isdigit() and ticks and _start_ticks(int(pid)) != ticks:  # gone, or pid reused
        return f"the process working on it (pid {pid}) ended before it finished"
    if until is None or utc(until) < datetime.now(UTC):
        return "its run stopped reporting (lease expired)" if until is not None else "no run holds it"
    return None


class Leases:
    """Finding a tool call's creation by its idempotency key, and the in_progress → settled status of a creation."""

    def _lease_end(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_seconds)

    def find(self, idempotency_key: str, user_id: str | None = None) -> CreationView | None:
        """The creation a tool call with this key made, if it made one."""
        with self.sessions() as session:
            record = session.scalar(select(CreationRecord).where(CreationRecord.idempotency_key == idempotency_key))
            if record is None or (user_id is not None and record.user_id != user_id):
                return None
            return self.view(record)

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
                record.status, record.lease_owner, record.lease_until = status_of(record.assets), None, None
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
                reason = lease_broken(record.lease_owner, record.lease_until)
                if reason:
                    record.status, record.status_reason, record.lease_owner, record.lease_until = "interrupted", reason, None, None
                    marked += 1
                    log.info("step=recover creation=%s status=interrupted reason=%s", record.id, reason)
        return marked
