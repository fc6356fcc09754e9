"""The vector index is rebuilt only when it is really corrupt. A full disk, a permission problem or an I/O error
fails clearly and keeps every file (the index is fine once the disk is); a corrupt Chroma file is set aside and
the index refilled from SQLite, and recall works after."""
from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memory.recall import recall
from memory.vectors import IndexUnavailable, classify_error
from tools.backends.base import GeneratedAsset

ROOT = Path(__file__).resolve().parents[2]
IDEAS = ["a brass owl automaton", "a wooden treasure chest", "a glass whale in a bottle"]


def image(data: bytes) -> GeneratedAsset:
    return GeneratedAsset(kind="image", data=data, mime="image/png", backend="test")


def fill(store, user="u"):
    return [store.create(user_id=user, thread_id="t", original_prompt=idea, enhanced_prompt=idea + ", detailed",
                         assets=[image(idea.encode())]) for idea in IDEAS]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class ChromaError(Exception):  # what Chroma's Rust core raises, by message
    pass


@pytest.mark.parametrize("exc, kind", [
    (OSError(errno.ENOSPC, "No space left on device"), "environment"),
    (PermissionError(errno.EACCES, "Permission denied"), "environment"),
    (OSError(errno.EROFS, "Read-only file system"), "environment"),
    (ChromaError("error returned from database: (code: 13) database or disk is full"), "environment"),
    (ChromaError("error returned from database: (code: 5) database is locked"), "environment"),
    (ChromaError("error returned from database: (code: 10) disk I/O error"), "environment"),
    (ChromaError("error returned from database: (code: 8) attempt to write a readonly database"), "environment"),
    # the messages Chroma 1.5 gave when each file of a real index was truncated or overwritten
    (ChromaError("error returned from database: (code: 11) database disk image is malformed"), "corrupt"),
    (ChromaError("error returned from database: (code: 26) file is not a database"), "corrupt"),
    (ChromaError("Error executing plan: Error sending backfill request to compactor: Error constructing hnsw segment "
                 "reader: Error creating hnsw segment reader: Error loading hnsw index"), "corrupt"),
    (ChromaError("Error creating hnsw segment reader: Error deserializing pickle file: eval error at offset 93: EOF"), "corrupt"),
    (ChromaError("Error executing plan: Internal error: Error getting embedding"), "corrupt"),
    (ChromaError("Collection expecting embedding with dimension of 384, got 3"), "other"),
])
def test_errors_are_sorted_into_environment_corrupt_and_other(exc, kind):
    assert classify_error(exc) == kind
    wrapped = RuntimeError("while opening the index")
    wrapped.__cause__ = exc  # the cause is looked at too
    assert classify_error(wrapped) == kind


def test_a_disk_full_while_opening_keeps_the_index_and_recall_recovers(store, monkeypatch):
    import chromadb

    fill(store)
    chroma = Path(store.data_dir) / "chroma"
    store.index._close()  # as a fresh process finds it
    before = snapshot(chroma)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chromadb, "PersistentClient", disk_full)
    with pytest.raises(IndexUnavailable, match="No space left on device.*kept"):
        recall(store, "owl", "u")
    assert snapshot(chroma) == before  # nothing deleted, nothing rebuilt
    assert not list(chroma.parent.glob("chroma.corrupt-*"))
    monkeypatch.undo()
    assert recall(store, "owl", "u").creations[0].original_prompt == "a brass owl automaton"
    assert store.index.count() == 3


WRITE_WITH_A_FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
from memory.store import MemoryStore
from memory.vectors import IndexUnavailable
store = MemoryStore()
store.ensure_index()
vectors = store.index
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
limit = min(p.stat().st_size for p in (Path(store.data_dir) / "chroma").glob("chroma.sqlite3*"))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit // 2, resource.RLIM_INFINITY))
try:
    vectors.add([(f"new{i}", "x" * 4000 + str(i), {"user_id": "u", "created_ts": 1.0}) for i in range(200)])
except IndexUnavailable as exc:
    print("UNAVAILABLE", exc)
    sys.exit(0)
print("WROTE")
sys.exit(3)
"""


def test_a_real_write_failure_keeps_the_index(data_dir):
    """A real failing write (the file size limit makes SQLite's writes fail like a full disk does) in another
    process: it reports the index unavailable, deletes nothing, and the index is whole afterwards."""
    from memory.store import MemoryStore

    from services import atelier_env

    store = MemoryStore()
    fill(store)
    store.index._close()
    proc = subprocess.run([sys.executable, "-c", WRITE_WITH_A_FULL_DISK], env=atelier_env(data_dir), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "UNAVAILABLE" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "kept" in proc.stdout
    chroma = Path(data_dir) / "chroma"
    assert not list(chroma.parent.glob("chroma.corrupt-*"))
    fresh = MemoryStore()
    assert fresh.index.count() == 3 and fresh.index.unreachable() == []
    assert recall(fresh, "treasure", "u").creations[0].original_prompt == "a wooden treasure chest"


# Not here: a damaged header.bin or data_level0.bin. Chroma 1.5.9 may load those without a word (recall then
# answers nonsense, which the self-check on opening catches: VectorIndex._user_collection) or crash the process
# (SIGSEGV inside its HNSW loader), which no Python code can catch; newer Chroma validates the files first.
@pytest.mark.parametrize("damage", ["sqlite", "hnsw_pickle"])
def test_a_really_corrupt_index_is_rebuilt_from_sqlite(data_dir, monkeypatch, damage):
    from memory import vectors
    from memory.store import MemoryStore

    # Chroma writes a collection's graph files every sync_threshold additions (100 here); a smaller threshold
    # makes this test's few creations reach those files.
    monkeypatch.setitem(vectors.HNSW_CONFIGURATION, "sync_threshold", 2)
    monkeypatch.setitem(vectors.HNSW_CONFIGURATION, "batch_size", 2)
    store = MemoryStore()
    fill(store)
    store.index._close()
    chroma = Path(data_dir) / "chroma"
    if damage == "sqlite":
        targets = [chroma / "chroma.sqlite3"]
    else:
        targets = list(chroma.rglob("index_metadata.pickle"))
    assert targets, sorted(chroma.rglob("*"))
    for target in targets:
        target.write_bytes(b"\0not an index" * 64)
    reopened = MemoryStore()
    result = recall(reopened, "owl", "u")
    assert result.creations and result.creations[0].original_prompt == "a brass owl automaton"
    assert reopened.index.count() == 3 and reopened.index.unreachable() == []
    assert not list(chroma.parent.glob("chroma.corrupt-*"))  # the damaged copy is gone once the new one works


def test_vectors_of_the_wrong_shape_are_refused_before_anything_is_written(store):
    from memory.bulk import NewCreation, import_creations

    creations = [NewCreation(user_id="u", original_prompt=f"p{i}", enhanced_prompt="", assets=[image(b"x")]) for i in range(3)]
    with pytest.raises(ValueError, match="3 creations but 2 vectors"):
        import_creations(store, creations, vectors=np.zeros((2, 384), dtype=np.float32))
    with pytest.raises(ValueError, match="user id"):
        import_creations(store, [NewCreation(user_id=" ", original_prompt="p", enhanced_prompt="", assets=[image(b"x")])])
    assert store.count() == 0 and store.index.count() == 0
