"""Long-term memory with the real parts: SQLite (WAL), Chroma, packaged MiniLM, asset files."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from memory.models import CreationRecord
from memory.recall import recall
from tools.backends.base import GeneratedAsset

PNG = b"\x89PNG\r\n\x1a\n" + b"fake-png-body"


def asset(data: bytes = PNG, kind="image", mime="image/png") -> GeneratedAsset:
    return GeneratedAsset(kind=kind, data=data, mime=mime, backend="test", metadata={"seed": 1})


def make(store, user, idea, days_ago=0, data=None):
    view = store.create(user_id=user, thread_id="t", original_prompt=idea, enhanced_prompt=idea + ", detailed",
                        assets=[asset(data or idea.encode() + PNG)])
    if days_ago:
        with store.sessions.begin() as s:
            s.execute(update(CreationRecord).where(CreationRecord.id == view.id)
                      .values(created_at=datetime.now(UTC) - timedelta(days=days_ago)))
        store.reindex()
    return view


def test_create_stores_content_addressed_assets(store):
    view = make(store, "alice", "a red fox")
    image = view.image
    assert Path(image.path).read_bytes() == b"a red fox" + PNG
    assert image.sha256 == hashlib.sha256(b"a red fox" + PNG).hexdigest()
    assert image.rel_path.startswith(f"assets/{image.sha256[:2]}/") and image.rel_path.endswith(".png")
    assert view.status == "image_only" and view.enhanced_prompt == "a red fox, detailed"
    glb = asset(b"glTF" + b"\x02\x00\x00\x00" + b"x" * 20, kind="model", mime="model/gltf-binary")
    view = store.add_assets(view.id, "alice", [glb])
    assert view.status == "complete" and view.model.path.endswith(".glb")
    assert not list(Path(store.data_dir, "assets").rglob(".tmp-*"))


def test_users_are_isolated(store):
    a = make(store, "alice", "a castle on a hill")
    make(store, "bob", "a castle in the clouds")
    assert store.get(a.id, user_id="bob") is None
    assert [c.user_id for c in recall(store, "castle", "bob").creations] == ["bob"]
    with pytest.raises(LookupError):
        store.add_assets(a.id, "bob", [asset(b"bob's")])


def test_recall_by_meaning_time_and_recency(store):
    make(store, "u", "a medieval stone castle on a hill", days_ago=8)
    make(store, "u", "a small green frog on a leaf", days_ago=1)
    make(store, "u", "a rusty robot in the rain")
    castle = recall(store, "the castle", "u")
    assert castle.mode == "semantic" and castle.creations[0].original_prompt.startswith("a medieval stone castle")
    yesterday = recall(store, "what did I make yesterday", "u")
    assert [c.original_prompt for c in yesterday.creations] == ["a small green frog on a leaf"]
    assert recall(store, "the castle from yesterday", "u").creations == []
    latest = recall(store, "like before", "u")
    assert latest.mode == "recency" and latest.creations[0].original_prompt == "a rusty robot in the rain"


def test_failed_commit_leaves_no_record_and_no_new_file(store):
    first = make(store, "u", "a lighthouse")
    before = {p for p in Path(store.data_dir, "assets").rglob("*") if p.is_file()}
    with pytest.raises(IntegrityError):  # the clash itself, not any error
        store.create(user_id="u", thread_id="t", original_prompt="dup", enhanced_prompt="dup",
                     assets=[asset(b"brand new bytes")], creation_id=first.id)  # primary key clash
    after = {p for p in Path(store.data_dir, "assets").rglob("*") if p.is_file()}
    assert after == before
    assert store.count("u") == 1


def test_index_is_rebuilt_when_missing_or_corrupt(data_dir):
    from memory.store import MemoryStore

    store = MemoryStore()
    make(store, "u", "a brass owl automaton")
    make(store, "u", "a wooden treasure chest")
    chroma = Path(data_dir) / "chroma"
    # Corrupt the index on disk, then open the store as a new process would.
    for f in chroma.rglob("*.sqlite3"):
        f.write_bytes(b"this is not a database")
    reopened = MemoryStore()
    assert recall(reopened, "owl", "u").creations[0].original_prompt == "a brass owl automaton"
    assert reopened.reindex() == 2


def test_bad_user_is_rejected(store):
    with pytest.raises(ValueError):
        store.create(user_id="  ", thread_id=None, original_prompt="x", enhanced_prompt="x", assets=[asset()])
    assert store.count() == 0


def test_a_creation_is_indexed_once_however_often_it_is_offered(store):
    """The writer and another process's self-repair may both index one creation. Adding a vector again makes
    hnswlib update it in place, which can leave it unreachable; so the second offer must write nothing."""
    import sqlite3

    def last_write() -> int:  # Chroma numbers every write in its log; segments record the last one applied
        with sqlite3.connect(Path(store.data_dir) / "chroma" / "chroma.sqlite3") as db:
            return db.execute("SELECT MAX(seq_id) FROM max_seq_id").fetchone()[0]

    view = make(store, "u", "a glass hummingbird")
    item = (view.id, "a glass hummingbird", {"user_id": "u", "created_ts": view.created.timestamp()})
    before = last_write()
    assert store.index.add([item]) == 0 and last_write() == before
    assert store.index.add([item, ("other", "a stone lantern", {"user_id": "u", "created_ts": 1.0})]) == 1
    assert last_write() == before + 1 and store.index.count("u") == 2


def test_a_second_process_sees_the_first_ones_writes(data_dir):
    """A long-lived handle (the API server's) must not answer from a stale in-memory graph after another
    process (the chat) added to the same folder."""
    import subprocess
    import sys

    from memory.store import MemoryStore

    from services import atelier_env

    store = MemoryStore()
    make(store, "u", "a brass owl automaton")
    assert recall(store, "owl", "u").creations  # the handle is open now
    code = ("from memory.store import get_store; from tools.backends.base import GeneratedAsset; "
            "get_store().create(user_id='u', thread_id='t', original_prompt='a velvet dragon plush', enhanced_prompt='soft', "
            "assets=[GeneratedAsset(kind='image', data=b'plush', mime='image/png', backend='test')])")
    subprocess.run([sys.executable, "-c", code], env=atelier_env(data_dir), cwd=Path(__file__).resolve().parents[2], check=True,
                   capture_output=True, timeout=120)
    assert recall(store, "dragon plush", "u").creations[0].original_prompt == "a velvet dragon plush"
