"""The one place for SQLite connection settings: every SQLite database Atelier opens (the creations database
through SQLAlchemy, the LangGraph checkpoints, the studio's Chainlit data layer) gets them from here.

WAL lets the chat process and the API server read while one of them writes; busy_timeout makes a second writer
wait for the lock instead of failing with "database is locked". The creations database also turns on foreign
keys (its cascades) and synchronous=NORMAL (safe under WAL, one fsync per checkpoint instead of per commit)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 30000
CONNECT_TIMEOUT_S = 30  # sqlite3.connect(timeout=): the driver's own wait for a lock, the same 30 s
SHARED_PRAGMAS = ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
STORE_PRAGMAS = SHARED_PRAGMAS + ("PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")


def apply_pragmas(conn, pragmas: tuple[str, ...] = SHARED_PRAGMAS) -> None:
    """Set the pragmas on a DB-API connection (sqlite3.Connection, or the raw one SQLAlchemy hands out)."""
    cursor = conn.cursor()
    try:
        for pragma in pragmas:
            cursor.execute(pragma)
    finally:
        cursor.close()


def connect(path: str | Path, **kwargs) -> sqlite3.Connection:
    """sqlite3.connect with the shared pragmas set (checkpoints, the studio's data layer)."""
    conn = sqlite3.connect(str(path), timeout=CONNECT_TIMEOUT_S, **kwargs)
    apply_pragmas(conn)
    return conn


def engine_kwargs(url: str) -> dict:
    """create_engine keyword arguments for a database url (the driver's lock wait for SQLite)."""
    return {"connect_args": {"timeout": CONNECT_TIMEOUT_S}} if url.startswith("sqlite") else {}


def listen(engine) -> None:
    """Give every new connection of a SQLAlchemy engine on SQLite the store's pragmas."""
    if engine.url.get_backend_name() != "sqlite":
        return
    from sqlalchemy import event

    event.listen(engine, "connect", lambda dbapi_connection, _record: apply_pragmas(dbapi_connection, STORE_PRAGMAS))
