"""Chainlit's data layer on one SQLite file: users, threads, steps and elements as JSON documents.

This is what gives the studio its thread list (sidebar) and lets a thread resume after a restart; the
agent's own conversation state lives in the LangGraph checkpoints under the same thread id. Elements
are stored as their props only: every picture and model is served from memory by /atelier/asset/..., so
no file storage is needed (and nothing is duplicated).
"""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User

from memory import sqlite as memory_sqlite

log = logging.getLogger("atelier.ui")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, identifier TEXT NOT NULL UNIQUE, created_at TEXT, metadata TEXT);
CREATE TABLE IF NOT EXISTS threads (id TEXT PRIMARY KEY, user_id TEXT, user_identifier TEXT, name TEXT, created_at TEXT,
                                    updated_at TEXT, tags TEXT, metadata TEXT);
CREATE INDEX IF NOT EXISTS threads_user ON threads (user_id, updated_at);
CREATE TABLE IF NOT EXISTS steps (id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, created_at TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS steps_thread ON steps (thread_id, created_at);
CREATE TABLE IF NOT EXISTS elements (id TEXT PRIMARY KEY, thread_id TEXT, for_id TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS elements_thread ON elements (thread_id);
CREATE TABLE IF NOT EXISTS feedbacks (id TEXT PRIMARY KEY, for_id TEXT NOT NULL, thread_id TEXT, value INTEGER, comment TEXT);
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


class SQLiteDataLayer(BaseDataLayer):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = memory_sqlite.connect(self.path, check_same_thread=False)  # the shared pragmas
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.executescript(SCHEMA)
            self._conn.commit()

    # -- plumbing -----------------------------------------------------------------------------------
    def _run(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            rows = cur.fetchall()
            self._conn.commit()
            return rows

    def _many(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            try:
                for sql, params in statements:
                    self._conn.execute(sql, params)
                self._conn.commit()
            except Exception:
                self._conn.rollback()
                raise

    async def _q(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return await asyncio.to_thread(self._run, sql, params)

    # -- users --------------------------------------------------------------------------------------
    async def get_user(self, identifier: str) -> PersistedUser | None:
        rows = await self._q("SELECT * FROM users WHERE identifier = ?", (identifier,))
        if not rows:
            return None
        row = rows[0]
        return PersistedUser(id=row["id"], identifier=row["identifier"], createdAt=row["created_at"],
                             metadata=_loads(row["metadata"], {}))

    async def create_user(self, user: User) -> PersistedUser | None:
        existing = await self.get_user(user.identifier)
        metadata = json.dumps(user.metadata or {})
        if existing is None:
            await self._q("INSERT OR IGNORE INTO users (id, identifier, created_at, metadata) VALUES (?, ?, ?, ?)",
                          (str(uuid.uuid4()), user.identifier, _now(), metadata))
        else:
            await self._q("UPDATE users SET metadata = ? WHERE identifier = ?", (metadata, user.identifier))
        return await self.get_user(user.identifier)

    # -- threads ------------------------------------------------------------------------------------
    async def get_thread_author(self, thread_id: str) -> str:
        rows = await self._q("SELECT user_identifier FROM threads WHERE id = ?", (thread_id,))
        return (rows[0]["user_identifier"] or "") if rows else ""

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict | None = None, tags: list[str] | None = None):
        await asyncio.to_thread(self._update_thread, thread_id, name, user_id, metadata, tags)

    def _update_thread(self, thread_id, name, user_id, metadata, tags) -> None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()
            now = _now()
            if row is None:
                identifier = None
                if user_id:
                    u = self._conn.execute("SELECT identifier FROM users WHERE id = ?", (user_id,)).fetchone()
                    identifier = u["identifier"] if u else None
                meta = {k: v for k, v in (metadata or {}).items() if v is not None}
                self._conn.execute(
                    "INSERT INTO threads (id, user_id, user_identifier, name, created_at, updated_at, tags, metadata) VALUES (?,?,?,?,?,?,?,?)",
                    (thread_id, user_id, identifier, (name or meta.get("name") or "")[:200] or None, now, now,
                     json.dumps(tags or []), json.dumps(meta)))
            else:
                meta = _loads(row["metadata"], {})
                for key, value in (metadata or {}).items():
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                new_name = name if name is not None else row["name"]
                new_user = user_id or row["user_id"]
                identifier = row["user_identifier"]
                if user_id and user_id != row["user_id"]:
                    u = self._conn.execute("SELECT identifier FROM users WHERE id = ?", (user_id,)).fetchone()
                    identifier = u["identifier"] if u else identifier
                self._conn.execute(
                    "UPDATE threads SET name = ?, user_id = ?, user_identifier = ?, tags = ?, metadata = ?, updated_at = ? WHERE id = ?",
                    ((new_name or "")[:200] or None, new_user, identifier,
                     json.dumps(tags) if tags is not None else row["tags"], json.dumps(meta), now, thread_id))
            self._conn.commit()

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        return await asyncio.to_thread(self._get_thread, thread_id)

    def _get_thread(self, thread_id: str) -> ThreadDict | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()
            if row is None:
                return None
            steps = [_loads(r["doc"], {}) for r in
                     self._conn.execute("SELECT doc FROM steps WHERE thread_id = ? ORDER BY created_at, rowid", (thread_id,))]
            elements = [_loads(r["doc"], {}) for r in self._conn.execute("SELECT doc FROM elements WHERE thread_id = ?", (thread_id,))]
            feedback = {r["for_id"]: {"id": r["id"], "forId": r["for_id"], "value": r["value"], "comment": r["comment"]}
                        for r in self._conn.execute("SELECT * FROM feedbacks WHERE thread_id = ?", (thread_id,))}
        for step in steps:
            if step.get("id") in feedback:
                step["feedback"] = feedback[step["id"]]
        return self._thread_dict(row, steps, elements)

    @staticmethod
    def _thread_dict(row: sqlite3.Row, steps: list, elements: list) -> ThreadDict:
        return ThreadDict(id=row["id"], createdAt=row["created_at"], name=row["name"], userId=row["user_id"],
                          userIdentifier=row["user_identifier"], tags=_loads(row["tags"], []),
                          metadata=_loads(row["metadata"], {}), steps=steps, elements=elements)

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        if not filters.userId:
            raise ValueError("userId is required")
        rows = await self._q("SELECT * FROM threads WHERE user_id = ? ORDER BY updated_at DESC, created_at DESC", (filters.userId,))
        if filters.search:
            needle = f"%{filters.search.lower()}%"
            hits = {r["thread_id"] for r in await self._q(
                "SELECT DISTINCT thread_id FROM steps WHERE lower(doc) LIKE ? AND thread_id IN (SELECT id FROM threads WHERE user_id = ?)",
                (needle, filters.userId))}
            rows = [r for r in rows if r["id"] in hits or filters.search.lower() in (r["name"] or "").lower()]
        if filters.feedback is not None:
            fb = {r["thread_id"] for r in await self._q("SELECT thread_id FROM feedbacks WHERE value = ?", (int(filters.feedback),))}
            rows = [r for r in rows if r["id"] in fb]
        start = 0
        if pagination.cursor:
            for i, r in enumerate(rows):
                if r["id"] == pagination.cursor:
                    start = i + 1
                    break
        page = rows[start:start + pagination.first]
        data = [self._thread_dict(r, [], []) for r in page]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=len(rows) > start + pagination.first,
                              startCursor=data[0]["id"] if data else None, endCursor=data[-1]["id"] if data else None),
            data=data)

    async def delete_thread(self, thread_id: str):
        await asyncio.to_thread(self._many, [
            ("DELETE FROM feedbacks WHERE thread_id = ?", (thread_id,)),
            ("DELETE FROM elements WHERE thread_id = ?", (thread_id,)),
            ("DELETE FROM steps WHERE thread_id = ?", (thread_id,)),
            ("DELETE FROM threads WHERE id = ?", (thread_id,)),
        ])

    # -- steps --------------------------------------------------------------------------------------
    @queue_until_user_message()
    async def create_step(self, step_dict: dict):
        await self._upsert_step(step_dict)

    @queue_until_user_message()
    async def update_step(self, step_dict: dict):
        await self._upsert_step(step_dict)

    async def _upsert_step(self, step_dict: dict) -> None:
        thread_id = step_dict.get("threadId")
        if not thread_id or not step_dict.get("id"):
            return
        await self.update_thread(thread_id)
        doc = {k: v for k, v in dict(step_dict).items() if v is not None}
        doc.pop("feedback", None)
        await self._q("INSERT INTO steps (id, thread_id, created_at, doc) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                      (doc["id"], thread_id, doc.get("createdAt") or _now(), json.dumps(doc, default=str)))

    @queue_until_user_message()
    async def delete_step(self, step_id: str):
        await asyncio.to_thread(self._many, [
            ("DELETE FROM feedbacks WHERE for_id = ?", (step_id,)),
            ("DELETE FROM elements WHERE for_id = ?", (step_id,)),
            ("DELETE FROM steps WHERE id = ?", (step_id,)),
        ])

    async def get_favorite_steps(self, user_id: str) -> list:
        return []

    # -- elements -----------------------------------------------------------------------------------
    @queue_until_user_message()
    async def create_element(self, element):
        if element.type != "custom" or not element.for_id or not element.thread_id:
            return  # only custom elements are shown by this app; their props reference /atelier/asset URLs
        doc = {k: v for k, v in element.to_dict().items() if v is not None and k != "path"}
        doc["props"] = getattr(element, "props", {}) or {}
        await self._q("INSERT INTO elements (id, thread_id, for_id, doc) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, for_id = excluded.for_id",
                      (element.id, element.thread_id, element.for_id, json.dumps(doc, default=str)))

    async def get_element(self, thread_id: str, element_id: str):
        rows = await self._q("SELECT doc FROM elements WHERE id = ? AND thread_id = ?", (element_id, thread_id))
        return _loads(rows[0]["doc"], None) if rows else None

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: str | None = None):
        await self._q("DELETE FROM elements WHERE id = ?", (element_id,))

    # -- feedback -----------------------------------------------------------------------------------
    async def upsert_feedback(self, feedback: Feedback) -> str:
        feedback.id = feedback.id or str(uuid.uuid4())
        await self._q("INSERT INTO feedbacks (id, for_id, thread_id, value, comment) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET value = excluded.value, comment = excluded.comment",
                      (feedback.id, feedback.forId, feedback.threadId, feedback.value, feedback.comment))
        return feedback.id

    async def delete_feedback(self, feedback_id: str) -> bool:
        await self._q("DELETE FROM feedbacks WHERE id = ?", (feedback_id,))
        return True

    # -- misc ---------------------------------------------------------------------------------------
    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        with self._lock:
            self._conn.close()
