"""Recall over thousands of creations through the store's own API, the embedded index's handling of processes
(no reopen after its own writes, a reopen after another's), the bulk paths, and the SQL index recall relies on.
The full-size figures come from benchmarks/recall_scale.py; these use a few thousand records so they run in
seconds: filler vectors are mixes of real MiniLM embeddings of a few phrases, the planted records and every
query are embedded by the real model."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from memory.bulk import NewCreation, import_creations
from memory.recall import recall
from tools.backends.base import GeneratedAsset

ROOT = Path(__file__).resolve().parents[2]
PLANTED = [
    ("an axolotl playing a golden saxophone on an iceberg", "that axolotl with the sax"),
    ("a raccoon librarian stamping overdue books", "raccoon working in a library"),
    ("a jellyfish chandelier above a ballroom", "chandelier shaped like jellyfish"),
]
PHRASES = ["a rusty lighthouse at dusk", "a paper crane in the snow", "a neon robot in a city street", "a marble whale",
           "a copper teapot, studio lighting", "a floating castle above clouds", "a velvet dragon plush", "a glass violin",
           "a wooden sailboat by the sea", "a tiny cactus in a desert, pixel art", "an ancient clocktower, oil painting",
           "a glowing mushroom forest", "a silver bicycle on the moon", "a giant tiger, ukiyo-e", "a broken lantern in a cave"]
IMAGE = GeneratedAsset(kind="image", data=b"\x89PNG\r\n\x1a\nscale", mime="image/png", backend="test")


def build(store, n: int, users) -> dict[str, str]:
    """n filler creations spread over users() plus the planted ones (owned by 'main'); planted prompt -> id."""
    from memory import embeddings

    base = embeddings.embed(PHRASES)
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    mixed = 0.7 * base[a] + 0.3 * base[b] + rng.normal(0, 0.03, (n, base.shape[1])).astype(np.float32)
    vectors = np.vstack([mixed / np.linalg.norm(mixed, axis=1, keepdims=True), embeddings.embed([p for p, _ in PLANTED])])
    start = datetime.now(UTC) - timedelta(days=200)
    creations = [NewCreation(user_id=users(i), original_prompt=f"{PHRASES[a[i]]}, with {PHRASES[b[i]]}", enhanced_prompt="",
                             assets=[IMAGE], created_at=start + timedelta(minutes=i)) for i in range(n)]
    creations += [NewCreation(user_id="main", original_prompt=p, enhanced_prompt="", assets=[IMAGE],
                              created_at=start + timedelta(days=k * 30)) for k, (p, _) in enumerate(PLANTED)]
    ids = import_creations(store, creations, vectors=vectors.astype(np.float32))
    return dict(zip([p for p, _ in PLANTED], ids[n:]))


@pytest.mark.parametrize("layout", ["many users", "one user"])
def test_the_planted_creation_comes_first_among_thousands(store, layout):
    users = (lambda i: "main" if i % 10 else f"other-{i % 37}") if layout == "many users" else (lambda i: "main")
    planted = build(store, 1600, users)
    assert store.count() == 1603 and store.index.count() == 1603
    for prompt, query in PLANTED:
        found = recall(store, query, "main")
        assert found.mode == "semantic" and found.creations[0].id == planted[prompt], (query, found.creations[0].original_prompt)
    # Nothing is silently forgotten: after a reopen (the graph was written out: more than Chroma's sync_threshold
    # went in), every stored vector is what its own search returns first. The HNSW graph alone fails this for
    # about 1 vector in 2000 of such similar prompts; users of this size are searched exactly.
    store.index._close()
    index = store.index
    stored = index._call(lambda: index._user_collection("main").get(include=["embeddings"]))
    forgotten = [cid for cid, v in zip(stored["ids"], stored["embeddings"]) if index.query_vector(v, "main", 1)[0][0] != cid]
    assert forgotten == []
    assert recall(store, PLANTED[0][1], "main").creations[0].id == planted[PLANTED[0][0]]
    if layout == "many users":
        assert all(c.user_id == "other-1" for c in recall(store, "a rusty lighthouse", "other-1", limit=20).creations)


@pytest.mark.parametrize("user_size", ["searched exactly", "searched by graph"])
def test_a_time_window_is_searched_exactly(store, monkeypatch, user_size):
    """'the chandelier from last month' over a user with many creations: the few in the window are compared one by
    one (a graph search restricted to a small allow-list can miss), and nothing outside the window comes back. A
    user above ATELIER_RECALL_EXACT_LIMIT takes the window's vectors from Chroma for that."""
    from models.settings import reset_settings

    if user_size == "searched by graph":
        monkeypatch.setenv("ATELIER_RECALL_EXACT_LIMIT", "100")
        reset_settings()
    planted = build(store, 1200, lambda i: "main")
    jellyfish_at = datetime.now(UTC) - timedelta(days=200) + timedelta(days=60)
    since, until = jellyfish_at - timedelta(days=1), jellyfish_at + timedelta(days=1)
    hits = store.semantic("jellyfish chandelier", "main", limit=5, since=since, until=until)
    assert hits and hits[0][0] == planted[PLANTED[2][0]] and hits[0][1] > 0.6
    window = {v.id for v in store.list("main", limit=100, since=since, until=until)}
    assert {cid for cid, _ in hits} <= window


def test_a_commit_does_not_reopen_the_index_but_another_process_write_does(store, data_dir):
    from services import atelier_env

    def make(idea):
        return store.create(user_id="u", thread_id="t", original_prompt=idea, enhanced_prompt=idea, assets=[
            GeneratedAsset(kind="image", data=idea.encode(), mime="image/png", backend="test")])

    make("a brass owl automaton")
    assert recall(store, "owl", "u").creations
    client = store.index._handle.client
    make("a wooden treasure chest")
    make("a glass whale in a bottle")
    assert recall(store, "whale", "u").creations[0].original_prompt == "a glass whale in a bottle"
    assert store.index._handle.client is client  # our own writes: same handle, same in-memory graph
    code = ("from memory.store import get_store; from tools.backends.base import GeneratedAsset; "
            "get_store().create(user_id='u', thread_id='t', original_prompt='a velvet dragon plush', enhanced_prompt='soft', "
            "assets=[GeneratedAsset(kind='image', data=b'plush', mime='image/png', backend='test')])")
    subprocess.run([sys.executable, "-c", code], env=atelier_env(data_dir), cwd=ROOT, check=True, timeout=180)
    assert recall(store, "dragon plush", "u").creations[0].original_prompt == "a velvet dragon plush"
    assert store.index._handle.client is not client  # the generation changed: reopened, the files read again
    assert store.index.count() == 4 and store.index.unreachable() == []


def test_an_index_from_before_per_user_collections_is_migrated_without_reembedding(store, monkeypatch):
    """Earlier versions kept one shared 'creations' collection: its vectors move to per-user collections."""
    from memory import embeddings, vectors

    made = [store.create(user_id=user, thread_id="t", original_prompt=idea, enhanced_prompt=idea, assets=[
        GeneratedAsset(kind="image", data=idea.encode(), mime="image/png", backend="test")])
        for user, idea in [("ann", "a brass owl automaton"), ("ann", "a glass whale"), ("bob", "a copper teapot")]]
    index = store.index
    stored = {}

    def to_legacy():
        client = index._client()
        legacy = client.get_or_create_collection(vectors.LEGACY_COLLECTION, embedding_function=None,
                                                 configuration={"hnsw": {"space": "cosine"}})
        for user in ("ann", "bob"):
            got = index._user_collection(user).get(include=["embeddings", "metadatas", "documents"])
            stored.update(zip(got["ids"], got["embeddings"]))
            legacy.add(ids=got["ids"], embeddings=got["embeddings"], metadatas=got["metadatas"], documents=got["documents"])
            client.delete_collection(vectors.user_collection_name(user))

    index._call(to_legacy, writes=True)
    index._close()
    index._handle.migrated = False  # as a process of the new version opening the folder for the first time

    def no_embedding(texts):
        raise AssertionError("migration must not re-embed")

    monkeypatch.setattr(embeddings, "embed", no_embedding)
    assert index.count("ann") == 2 and index.count("bob") == 1
    names = {c.name for c in index._call(lambda: index._client().list_collections())}
    assert vectors.LEGACY_COLLECTION not in names
    moved = index._call(lambda: index._user_collection("ann").get(include=["embeddings"]))
    for cid, vector in zip(moved["ids"], moved["embeddings"]):
        assert np.allclose(vector, stored[cid])
    assert {m.id for m in made} == index.ids()


def test_listing_a_users_newest_uses_the_user_created_index(store):
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT id FROM creations WHERE user_id = 'u' ORDER BY created_at DESC LIMIT 20")))
        assert "ix_creations_user_created" in plan, plan
        # A database made before the index existed gets it when a store opens it.
        conn.execute(text("DROP INDEX ix_creations_user_created"))
        conn.commit()
    from memory.store import MemoryStore

    MemoryStore(store.settings)
    with store.engine.connect() as conn:
        names = {row[1] for row in conn.execute(text("PRAGMA index_list('creations')"))}
    assert "ix_creations_user_created" in names


def _sql_counts_run(store):
    """Statements that count rows, executed on the store's engine from now on (a list that fills as they run)."""
    from sqlalchemy import event

    seen: list[str] = []

    def before(conn, cursor, statement, *args):
        if "count(" in statement.lower():
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    return seen


def test_recall_and_commit_count_sql_only_after_another_process_wrote(store, data_dir):
    """The index check before each recall and commit compares counts; SQL's are kept while no other process
    wrote, moved by the store's own writes, and counted afresh after another process's write (which also
    brings its creation in)."""
    from services import atelier_env

    def make(idea):
        return store.create(user_id="u", thread_id="t", original_prompt=idea, enhanced_prompt=idea, assets=[
            GeneratedAsset(kind="image", data=idea.encode(), mime="image/png", backend="test")])

    make("a brass owl automaton")
    assert recall(store, "owl", "u").creations  # the first check (full comparison), then counts are kept
    counts = _sql_counts_run(store)
    for idea in ("a wooden treasure chest", "a glass whale in a bottle"):
        make(idea)
    assert recall(store, "whale", "u").creations[0].original_prompt == "a glass whale in a bottle"
    assert recall(store, "treasure chest", "u").creations[0].original_prompt == "a wooden treasure chest"
    assert counts == []  # own writes: nothing counted again
    assert store._sql_counts(store.index.count_and_epoch()[1]) == (3, 3) and counts == []
    assert (store.count(), store._vector_row_count()) == (3, 3)  # what counting would have said
    del counts[:]
    code = ("from memory.store import get_store; from memory.types import GeneratedAsset; "
            "get_store().create(user_id='u', thread_id='t', original_prompt='a velvet dragon plush', enhanced_prompt='soft', "
            "assets=[GeneratedAsset(kind='image', data=b'plush', mime='image/png', backend='test')])")
    subprocess.run([sys.executable, "-c", code], env=atelier_env(data_dir), cwd=ROOT, check=True, timeout=180)
    assert recall(store, "dragon plush", "u").creations[0].original_prompt == "a velvet dragon plush"
    assert len(counts) == 2  # another process wrote: SQL counted once more (creations, vector rows)
    assert recall(store, "owl", "u").creations and len(counts) == 2


def test_a_row_the_kept_counts_miss_is_indexed_after_the_next_write_by_another_process(store, data_dir):
    """A process that died between its SQL commit and its vector leaves a row without a vector and moves no
    generation; the next index write by anyone makes every process count again, and the check repairs it."""
    from datetime import datetime

    from memory.models import CreationRecord, Prompt

    made = store.create(user_id="u", thread_id="t", original_prompt="a brass owl automaton", enhanced_prompt="brass",
                        assets=[IMAGE])
    assert recall(store, "owl", "u").creations[0].id == made.id
    with store.sessions.begin() as session:  # as the dead process left it: a row, no vector, no generation moved
        session.add(CreationRecord(id="orphan0000000001", user_id="u", thread_id="t", status="image_only",
                                   created_at=datetime.now(UTC), prompt=Prompt(original="a glass whale in a bottle", enhanced="")))
    lock = store.index._lock_path
    lock.write_bytes(b"another-process-wrote")  # what any other process's index write does to the lock file
    assert recall(store, "glass whale", "u").creations[0].id == "orphan0000000001"
    assert store.index.count() == store.count() == store._vector_row_count() == 2


def test_the_exact_copy_grows_in_place_and_searches_like_brute_force():
    from memory.vectors import ExactCopy

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(3000)]
    created = np.arange(3000, dtype=np.float64)
    copy = ExactCopy("col", ids[:1000], vectors[:1000], created[:1000])
    buffer = copy._matrix
    copy.append(ids[1000:1001], vectors[1000:1001], created[1000:1001])
    assert copy._matrix is buffer  # a commit writes into the spare rows: no copy of the whole matrix
    for i in range(1001, 3000, 7):
        copy.append(ids[i:i + 7], vectors[i:i + 7], created[i:i + 7])
    assert len(copy) == 3000 and copy.newest() == 2999.0
    for q in rng.normal(size=(5, 384)).astype(np.float32):
        scores = vectors @ q
        want = [ids[i] for i in np.argsort(-scores)[:10]]
        assert [cid for cid, _ in copy.search(q, 10)] == want
        window = [ids[i] for i in np.argsort(-np.where((created >= 500) & (created < 900), scores, -np.inf))[:10]]
        assert [cid for cid, _ in copy.search(q, 10, since_ts=500, until_ts=900)] == window
        assert len(copy.search(q, 5000)) == 3000 and copy.search(q, 0) == []
    assert [cid for cid, _ in copy.search(vectors[42], 1)] == ["c42"]


def test_the_query_text_keeps_the_words_inside_the_description():
    from memory.recall import descriptive_part, search_text

    assert search_text("show me the turtle with a town on its back again") == "turtle with a town on its"
    assert descriptive_part("turtle with a town on its back") == "turtle town on its"  # what was embedded before
    assert search_text("the castle I made") == "castle" and search_text("like before") == ""
    assert search_text("that axolotl with the sax") == "axolotl with the sax"


def test_a_query_embedding_is_cached_and_read_only():
    from memory import embeddings

    embeddings.clear_query_cache()
    first = embeddings.embed_query("a turtle with a town on its back")
    assert np.allclose(first, embeddings.embed(["a turtle with a town on its back"])[0], atol=1e-6)
    assert embeddings.embed_query("a turtle with a town on its back") is first
    with pytest.raises(ValueError):
        first[0] = 1.0  # shared by every caller of the same text
    embeddings.clear_query_cache()
    assert embeddings.embed_query("a turtle with a town on its back") is not first
