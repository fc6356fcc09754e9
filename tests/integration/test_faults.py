"""Faults lose nothing and leave nothing half-made: a full disk mid-write, temp files a killed writer left, a process
killed while its creation was in progress, a missing vector row, an old database. Real SQLite, Chroma, MiniLM and
files; a real tmpfs for the full disk where mounting is permitted (else a narrow fake of the write)."""
from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from memory.models import Asset, CreationRecord, VectorEmbedding
from tools.backends.base import GeneratedAsset

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"fault-test-body"


def image(data: bytes = PNG) -> GeneratedAsset:
    return GeneratedAsset(kind="image", data=data, mime="image/png", backend="test", metadata={})


def model(data: bytes = b"glTF\x02\x00\x00\x00model") -> GeneratedAsset:
    return GeneratedAsset(kind="model", data=data, mime="model/gltf-binary", backend="test", metadata={})


def temp_files(store) -> list[Path]:
    return list(Path(store.assets_dir).rglob(".tmp-*"))


def rows(store, table=CreationRecord) -> int:
    with store.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(table)))


# -- full disk -----------------------------------------------------------------------------------------------
def test_enospc_at_the_write_leaves_no_temp_file_and_no_row(store, monkeypatch):
    """The write step fails half-way with ENOSPC (a narrow fake of the file object): nothing stays behind, and the
    next write succeeds once space returns. Old code left the .tmp- file."""
    import memory.store as store_module

    real_fdopen = os.fdopen
    full = {"on": True}

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            if full["on"]:
                self.fh.write(data[: len(data) // 2])  # half of it reached the disk, then it was full
                self.fh.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(store_module.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as raised:
        store.create(user_id="u", thread_id="t", original_prompt="a fox", enhanced_prompt="a fox", assets=[image()])
    assert raised.value.errno == errno.ENOSPC
    assert temp_files(store) == [] and rows(store) == 0 and rows(store, Asset) == 0
    assert [p for p in Path(store.assets_dir).rglob("*") if p.is_file()] == []
    full["on"] = False
    view = store.create(user_id="u", thread_id="t", original_prompt="a fox", enhanced_prompt="a fox", assets=[image()])
    assert Path(view.image.path).read_bytes() == PNG and rows(store) == 1 and temp_files(store) == []


def _mount_tmpfs(path: Path, size: str) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs refused: {done.stderr.strip()}"


def test_real_full_disk_on_a_tiny_tmpfs(tmp_path, monkeypatch):
    """The assets dir on a 64 KiB tmpfs: a 200 KB image fails with ENOSPC from the kernel; no temp file, no row;
    after the file system grows (space returns) the same write succeeds."""
    from memory.store import MemoryStore
    from models.settings import reset_settings

    data_dir = tmp_path / "data"
    assets = data_dir / "assets"
    why = _mount_tmpfs(assets, "64k")
    if why:
        print(f"skipping the real full-disk test: {why} (the fake ENOSPC test above covers the write path)")
        pytest.skip(why)
    try:
        monkeypatch.setenv("ATELIER_DATA_DIR", str(data_dir))
        reset_settings()
        store = MemoryStore()
        big = PNG + os.urandom(200_000)
        with pytest.raises(OSError) as raised:
            store.create(user_id="u", thread_id="t", original_prompt="a big fox", enhanced_prompt="a big fox", assets=[image(big)])
        assert raised.value.errno == errno.ENOSPC
        assert temp_files(store) == [] and rows(store) == 0
        assert [p for p in assets.rglob("*") if p.is_file()] == []
        subprocess.run(["mount", "-o", "remount,size=2m", str(assets)], check=True)
        view = store.create(user_id="u", thread_id="t", original_prompt="a big fox", enhanced_prompt="a big fox", assets=[image(big)])
        assert Path(view.image.path).read_bytes() == big and rows(store) == 1 and temp_files(store) == []
        store.engine.dispose()
    finally:
        subprocess.run(["umount", "-l", str(assets)], capture_output=True)
        reset_settings()


def test_stale_temp_files_are_swept_when_a_store_opens(data_dir):
    """A writer killed between mkstemp and rename leaves .tmp-*: the next process removes the old ones and keeps a
    fresh one (another process may be writing it right now)."""
    from memory.store import STALE_TEMP_SECONDS, MemoryStore

    shard = data_dir / "assets" / "ab"
    shard.mkdir(parents=True)
    old, fresh, asset = shard / ".tmp-old1234", shard / ".tmp-fresh567", shard / "ab12.png"
    for path in (old, fresh, asset):
        path.write_bytes(b"partial")
    past = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(old, (past, past))
    os.utime(asset, (past, past))
    MemoryStore()
    assert not old.exists() and fresh.exists() and asset.exists()


# -- honest status -------------------------------------------------------------------------------------------
def test_status_in_progress_then_settled_completed_or_failed(store):
    made = store.create(user_id="u", thread_id="t", original_prompt="an owl", enhanced_prompt="an owl", assets=[image()],
                        idempotency_key="k-owl", in_progress=True)
    assert made.status == "in_progress"
    assert store.settle(made.id, "u") == "image_only"  # the run ended without asking for 3D
    assert store.get(made.id).status == "image_only"
    store.begin_work(made.id, "u")  # "now make it 3D"
    assert store.get(made.id).status == "in_progress"
    assert store.add_assets(made.id, "u", [model()]).status == "complete"
    other = store.create(user_id="u", thread_id="t", original_prompt="a cat", enhanced_prompt="a cat", assets=[image(PNG + b"cat")],
                         in_progress=True)
    store.fail(other.id, "u", "image_to_3d failed: relief crashed")
    failed = store.get(other.id)
    assert failed.status == "failed" and failed.status_reason == "image_to_3d failed: relief crashed"
    assert failed.to_dict()["status_reason"] == "image_to_3d failed: relief crashed"  # CLI and /creations JSON show it


KILLED_MID_RUN = """
import os, signal, sys
sys.path.insert(0, {root!r})
from memory.store import MemoryStore
from tools.backends.base import GeneratedAsset
store = MemoryStore()
view = store.create(user_id="u", thread_id="t", original_prompt="a lighthouse", enhanced_prompt="a lighthouse",
                    assets=[GeneratedAsset(kind="image", data=b"lighthouse-png", mime="image/png", backend="test", metadata={{}})],
                    idempotency_key="run:killed:text_to_image", in_progress=True)
print(view.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # killed before image_to_3d: the run never finishes it
"""


def test_a_creation_left_in_progress_by_a_killed_process_is_interrupted(data_dir):
    """Old code: such a creation stayed image_ready forever, like one made without 3D."""
    from memory.store import MemoryStore

    done = subprocess.run([sys.executable, "-c", KILLED_MID_RUN.format(root=str(ROOT))], capture_output=True, text=True,
                          env={**os.environ, "ATELIER_DATA_DIR": str(data_dir), "ATELIER_LOG_LEVEL": "WARNING"}, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    creation_id = done.stdout.split()[0]
    with sqlite3.connect(data_dir / "atelier.db") as db:  # what the killed process left
        assert db.execute("select status from creations where id=?", (creation_id,)).fetchone() == ("in_progress",)
    store = MemoryStore()  # a later process opens the store
    view = store.get(creation_id)
    assert view.status == "interrupted" and "ended before it finished" in view.status_reason
    with store.sessions() as s:
        record = s.get(CreationRecord, creation_id)
        assert record.status == "interrupted" and record.lease_owner is None  # written, not only shown
    assert [c.status for c in store.list("u")] == ["interrupted"]


def test_an_expired_lease_reads_as_interrupted(data_dir, monkeypatch):
    """A run on another host stops heartbeating: once its lease is over the creation reads as interrupted."""
    from memory.store import MemoryStore

    monkeypatch.setenv("ATELIER_CREATION_LEASE_SECONDS", "3")
    store = MemoryStore()
    made = store.create(user_id="u", thread_id="t", original_prompt="a kite", enhanced_prompt="a kite", assets=[image()], in_progress=True)
    with store.sessions.begin() as s:  # held by a process on another machine
        s.get(CreationRecord, made.id).lease_owner = "elsewhere:123:456"
    assert store.get(made.id).status == "in_progress"
    time.sleep(3.2)
    view = store.get(made.id)
    assert view.status == "interrupted" and "lease expired" in view.status_reason
    assert store.recover_interrupted() == 1 and store.get(made.id).status == "interrupted"


def test_a_live_run_keeps_its_creation_in_progress(store):
    """The sweep must not touch the creation a live process (this one) is working on."""
    made = store.create(user_id="u", thread_id="t", original_prompt="a boat", enhanced_prompt="a boat", assets=[image()], in_progress=True)
    assert store.recover_interrupted() == 0 and store.get(made.id).status == "in_progress"
    store.heartbeat(made.id)
    assert store.get(made.id).status == "in_progress"


# -- the index -----------------------------------------------------------------------------------------------
def test_a_missing_vector_row_is_repaired_by_the_next_commit(store, monkeypatch):
    """Chroma has the vector but the vector_embeddings row is missing (the index step failed half-way: the vector
    went in, writing its row failed): counts of Chroma and creations still agree, so old code never noticed until
    `reindex`. The store keeps SQL counts between checks (memory/store.py _sql_counts); a failed index step must
    drop them, or the next commits would trust counts that hide the missing row."""
    from sqlalchemy.orm import Session

    real_add = Session.add

    def add_but_not_vector_rows(self, instance, *args, **kwargs):
        if isinstance(instance, VectorEmbedding):
            raise OSError("disk I/O error while writing the vector row")
        return real_add(self, instance, *args, **kwargs)

    monkeypatch.setattr(Session, "add", add_but_not_vector_rows)
    first = store.create(user_id="u", thread_id="t", original_prompt="a red kite", enhanced_prompt="a red kite", assets=[image()])
    monkeypatch.setattr(Session, "add", real_add)
    assert rows(store, VectorEmbedding) == 0 and first.id in store.index.ids()
    store.create(user_id="u", thread_id="t", original_prompt="a blue boat", enhanced_prompt="a blue boat", assets=[image(PNG + b"2")])
    store.create(user_id="u", thread_id="t", original_prompt="a green frog", enhanced_prompt="a green frog", assets=[image(PNG + b"3")])
    with store.sessions() as s:
        assert set(s.scalars(select(VectorEmbedding.creation_id))) >= {first.id}
    assert rows(store, VectorEmbedding) == 3 and store.index.count() == 3


# -- an old database ------------------------------------------------------------------------------------------
OLD_SCHEMA = """
CREATE TABLE creations (id VARCHAR(32) NOT NULL, user_id VARCHAR(128) NOT NULL, thread_id VARCHAR(128), parent_id VARCHAR(32),
    created_at DATETIME NOT NULL, status VARCHAR(32) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(parent_id) REFERENCES creations (id));
CREATE INDEX ix_creations_user_id ON creations (user_id);
CREATE INDEX ix_creations_created_at ON creations (created_at);
CREATE INDEX ix_creations_thread_id ON creations (thread_id);
CREATE INDEX ix_creations_parent_id ON creations (parent_id);
CREATE TABLE prompts (id INTEGER NOT NULL, creation_id VARCHAR(32) NOT NULL, original TEXT NOT NULL, enhanced TEXT NOT NULL,
    PRIMARY KEY (id), UNIQUE (creation_id), FOREIGN KEY(creation_id) REFERENCES creations (id) ON DELETE CASCADE);
CREATE TABLE assets (id INTEGER NOT NULL, creation_id VARCHAR(32) NOT NULL, kind VARCHAR(16) NOT NULL, path TEXT NOT NULL,
    sha256 VARCHAR(64) NOT NULL, mime VARCHAR(64) NOT NULL, backend VARCHAR(64) NOT NULL, bytes BIGINT NOT NULL, meta JSON NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (id), FOREIGN KEY(creation_id) REFERENCES creations (id) ON DELETE CASCADE);
CREATE INDEX ix_assets_creation_id ON assets (creation_id);
CREATE INDEX ix_assets_sha256 ON assets (sha256);
CREATE TABLE vector_embeddings (id INTEGER NOT NULL, creation_id VARCHAR(32) NOT NULL, model_name VARCHAR(128) NOT NULL,
    dim INTEGER NOT NULL, chroma_id VARCHAR(64) NOT NULL, PRIMARY KEY (id), UNIQUE (creation_id, model_name),
    FOREIGN KEY(creation_id) REFERENCES creations (id) ON DELETE CASCADE);
CREATE INDEX ix_vector_embeddings_creation_id ON vector_embeddings (creation_id);
INSERT INTO creations VALUES ('old0000000000001', 'u', 't', NULL, '2026-11-01 10:00:00.000000', 'image_ready');
INSERT INTO prompts VALUES (1, 'old0000000000001', 'an old lantern', 'an old lantern, detailed');
INSERT INTO assets VALUES (1, 'old0000000000001', 'image', 'assets/aa/old.png', 'aa', 'image/png', 'sketch', 3, '{}', '2026-11-01 10:00:00.000000');
"""


def test_a_database_from_the_previous_version_opens_and_gains_the_columns(data_dir):
    """data/atelier.db made by the previous schema (the DDL its models produced): it opens, its row reads as
    before, the new columns and the unique key index exist, and keyed commits work on it."""
    from memory.store import MemoryStore

    data_dir.mkdir(parents=True)
    with sqlite3.connect(data_dir / "atelier.db") as db:
        db.executescript(OLD_SCHEMA)
    store = MemoryStore()
    old = store.get("old0000000000001")
    assert old.original_prompt == "an old lantern" and old.status == "image_ready" and old.status_reason is None
    with sqlite3.connect(data_dir / "atelier.db") as db:
        columns = {row[1] for row in db.execute("pragma table_info(creations)")}
        assert {"status_reason", "idempotency_key", "lease_until", "lease_owner"} <= columns
        assert "idempotency_key" in {row[1] for row in db.execute("pragma table_info(assets)")}
        unique = {row[1]: row[2] for row in db.execute("pragma index_list(creations)")}
        assert unique.get("uq_creations_idempotency_key") == 1
    key = f"run:{uuid.uuid4()}:text_to_image"
    a = store.create(user_id="u", thread_id="t", original_prompt="a new lamp", enhanced_prompt="a new lamp", assets=[image()], idempotency_key=key)
    b = store.create(user_id="u", thread_id="t", original_prompt="a new lamp", enhanced_prompt="a new lamp", assets=[image()], idempotency_key=key)
    assert a.id == b.id and store.count("u") == 2
    MemoryStore()  # opening it again migrates nothing and fails nothing


def test_where_creations_are_listed_the_status_shows(data_dir):
    """The studio's history page (ui/history.py over store views) and the API's /creations JSON carry the status
    and its reason; a creation that finished normally needs no badge."""
    from starlette.testclient import TestClient

    from agent.api.app import app
    from memory.store import get_store
    from ui import history

    store = get_store()
    done = store.create(user_id="ann", thread_id="t", original_prompt="a lamp", enhanced_prompt="a lamp", assets=[image()])
    broken = store.create(user_id="ann", thread_id="t", original_prompt="a kite", enhanced_prompt="a kite", assets=[image(PNG + b"k")],
                          in_progress=True)
    store.fail(broken.id, "ann", "image_to_3d failed: no model")
    items = {i["id"]: i for i in history.page("ann")["items"]}
    assert items[done.id]["status"] == "image_only"
    assert (items[broken.id]["status"], items[broken.id]["status_reason"]) == ("failed", "image_to_3d failed: no model")
    with TestClient(app) as client:  # runs the start-up hook too (store open, recovery)
        listed = client.get("/creations", params={"user_id": "ann"}).json()["creations"]
    assert {c["id"]: c["status"] for c in listed} == {done.id: "image_only", broken.id: "failed"}
