"""Short-term memory: thread checkpoints (LangGraph savers) and a per-user TTL cache of "the last one"."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from .settings import MemorySettings, get_settings


class LastCreationCache:
    """user -> the creation id they touched last, forgotten after the TTL.

    It answers "turn the last one into 3D" in a fresh thread without a database query, and it forgets,
    so "the last one" from yesterday's session comes from long-term memory (recall), not from here."""

    def __init__(self, ttl_seconds: float):
        self.ttl = ttl_seconds
        self._items: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def put(self, user_id: str, creation_id: str) -> None:
        with self._lock:
            self._items[user_id] = (time.monotonic() + self.ttl, creation_id)

    def get(self, user_id: str) -> str | None:
        with self._lock:
            item = self._items.get(user_id)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[user_id]
                return None
            return item[1]


_cache: LastCreationCache | None = None


def last_creation_cache() -> LastCreationCache:
    global _cache
    if _cache is None:
        _cache = LastCreationCache(get_settings().session_ttl_seconds)
    return _cache


def sqlite_checkpointer(settings: MemorySettings | None = None):
    """A SqliteSaver under the data dir, so a thread survives a restart of the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings = settings or get_settings()
    path = Path(settings.data_dir) / "checkpoints.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
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
