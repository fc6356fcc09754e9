"""Short-term memory: thread checkpoints (LangGraph savers) and the session context across a user's threads
(what they are working on, kept for ATELIER_SESSION_TTL_SECONDS)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from . import sqlite
from .models import SessionRow
from .settings import MemorySettings, get_settings


@dataclass(frozen=True)
class WorkingOn:
    """What a user was working on a moment ago: the creation, how it got there, and what their last recall found."""
    creation_id: str
    reason: str  # made | modelled | recalled | uploaded
    recalled: tuple[str, ...]  # the last recall's creation ids, best first (pending references: "the second one")
    age_seconds: float


class SessionContext:
    """Short-term memory across a user's threads: the creation they are working on (made, modelled or recalled
    last) and their last recall's results, forgotten after ATELIER_SESSION_TTL_SECONDS.

    It answers "make it 3D" in a fresh thread with the creation the user was just working on, even when a newer
    one exists (a recalled one). Once it has expired nobody knows what "it" is, and the caller says which
    creation it picked instead of guessing silently (tools/tools.py: image_to_3d).

    It lives in the creations database (one row per user), not in a process: the API server, the studio and the
    CLI share it, so a second process never answers from a stale copy of its own. Its table (SessionRow) is made
    with the others when the store opens the database (memory/schema.py create_schema)."""

    def __init__(self, engine: Engine, ttl_seconds: float, clock: Callable[[], float] = time.time):
        self.engine, self.ttl, self.clock = engine, float(ttl_seconds), clock

    def working_on(self, user_id: str, creation_id: str, reason: str, recalled: list[str] | None = None) -> None:
        """Remember what the user is working on now (a recall also keeps what it found)."""
        table = SessionRow.__table__
        values = {"creation_id": creation_id, "reason": reason, "updated_at": self.clock()}
        with self.engine.begin() as conn:
            if recalled is not None:
                values["recalled"] = list(recalled)
            elif (row := conn.execute(select(table.c.recalled).where(table.c.user_id == user_id)).first()) is not None:
                values["recalled"] = row.recalled or []
            else:
                values["recalled"] = []
            done = conn.execute(update(table).where(table.c.user_id == user_id).values(**values)).rowcount
            if not done:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(table).values(user_id=user_id, **values))
                except IntegrityError:  # another process inserted the row first: this write is the newer one
                    conn.execute(update(table).where(table.c.user_id == user_id).values(**values))

    def current(self, user_id: str) -> WorkingOn | None:
        """What the user is working on, or None when nothing is known or it is older than the TTL."""
        table = SessionRow.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.user_id == user_id)).first()
        if row is None:
            return None
        age = self.clock() - row.updated_at
        if age > self.ttl:
            return None
        return WorkingOn(row.creation_id, row.reason, tuple(row.recalled or ()), max(0.0, age))

    def forget(self, user_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(SessionRow.__table__).where(SessionRow.__table__.c.user_id == user_id))


_sessions: dict[int, SessionContext] = {}
_sessions_lock = threading.Lock()


def session_context(store, settings: MemorySettings | None = None) -> SessionContext:
    """The session context kept next to `store`'s creations (one per store per process; the rows are shared)."""
    settings = settings or get_settings()
    with _sessions_lock:
        found = _sessions.get(id(store))
        if found is None or found.engine is not store.engine:
            found = _sessions[id(store)] = SessionContext(store.engine, settings.session_ttl_seconds)
        return found


def sqlite_checkpointer(settings: MemorySettings | None = None):
    """A SqliteSaver under the data dir, so a thread survives a restart of the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings = settings or get_settings()
    path = Path(settings.data_dir) / "checkpoints.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite.connect(path, check_same_thread=False)  # the shared pragmas (memory/sqlite.py)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def checkpointer(settings: MemorySettings | None = None):
    """Postgres saver when ATELIER_DATABASE_URL points at Postgres, SQLite otherwise."""
    settings = settings or get_settings()
    url = settings.database_url or ""
    if url.startswith(("postgresql", "postgres")):
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        conninfo = url.replace("postgresql+psycopg://", "postgresql://").replace("postgresql+psycopg2://", "postgresql://")
        conn = Connection.connect(conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn)
        saver.setup()
        return saver
    return sqlite_checkpointer(settings)
