"""Schema creation and migration: make the tables, and bring a database made by an earlier version up to the
models (missing columns and indexes) without rewriting anything. Runs when a store opens."""
from __future__ import annotations

import logging
import time

from sqlalchemy import Index, inspect, text
from sqlalchemy.exc import DBAPIError

from .models import Base, CreationRecord

log = logging.getLogger("atelier.memory")

# Recall's "what did I make lately" and the listing both ask for one user's newest creations: with an index on
# user_id alone SQLite reads all of that user's rows and sorts them (tens of ms at 100k).
USER_CREATED_INDEX = Index("ix_creations_user_created", CreationRecord.user_id, CreationRecord.created_at)


def create_schema(engine, attempts: int = 5) -> None:
    """create_all, tolerating another process creating the same tables at the same moment (the chat and the API
    server, or two replicas, starting on an empty database): the loser's CREATE fails ("already exists" on SQLite,
    a duplicate pg_type row on Postgres); create_all checks first, so the retry is a no-op."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            add_missing_columns(engine)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def add_missing_columns(engine) -> None:
    """Bring a database made by an earlier version up to the models: create_all makes missing tables but never
    touches existing ones, so add each missing column (all added columns are nullable) and each missing index.
    An old data/atelier.db opens as it is; nothing is rewritten. (Two processes migrating at once: the loser's
    ALTER fails and create_schema's retry finds the column there.)"""
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


def ensure_indexes(engine) -> None:
    """Indexes added after a database was made: create_all() only adds them with a new table."""
    existing = {ix["name"] for ix in inspect(engine).get_indexes(CreationRecord.__tablename__)}
    if USER_CREATED_INDEX.name not in existing:
        USER_CREATED_INDEX.create(engine, checkfirst=True)
        log.info("step=add_index name=%s", USER_CREATED_INDEX.name)
