"""The same memory tests over both deployment shapes:

    sqlite-embedded   SQLite records + embedded Chroma (PersistentClient) + SQLite checkpoints   (the default)
    postgres-server   PostgreSQL records + Chroma server (`chroma run`) + PostgresSaver checkpoints (db-/memory-service)

PostgreSQL is a throwaway cluster (initdb + pg_ctl from the Debian package) and Chroma a real server process, both
on free loopback ports and stopped by the fixture.
"""
from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services import FAST_ENV, postgres_available, start_chroma, start_postgres

pytestmark = pytest.mark.timeout(300)

IDEAS = {"fox": "a red fox sleeping in the snow", "castle": "a gothic castle on a cliff at night",
         "whale": "a blue whale made of stained glass", "robot": "a rusty robot tending a garden"}


@pytest.fixture(scope="module", params=["sqlite-embedded", "postgres-server"])
def backend(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    services = []
    env = {**FAST_ENV, "ATELIER_DATA_DIR": str(base / "data")}
    if request.param == "postgres-server":
        if (why := postgres_available()) is not None:
            pytest.skip(why)
        pg = start_postgres(base / "postgres")
        services.append(pg)
        chroma = start_chroma(base / "chroma-server")
        services.append(chroma)
        env.update(ATELIER_DATABASE_URL=pg.extra["sqlalchemy_url"], ATELIER_CHROMA_URL=chroma.url)
    mp = pytest.MonkeyPatch()
    for key in [k for k in os.environ if k.startswith("ATELIER_")]:
        mp.delenv(key)
    for key, value in env.items():
        mp.setenv(key, value)
    from memory.settings import get_settings
    from models.settings import reset_settings

    reset_settings()
    try:
        yield {"name": request.param, "settings": get_settings(), "services": services, "base": base}
    finally:
        mp.undo()
        reset_settings()
        for service in reversed(services):
            service.stop()


@pytest.fixture(scope="module")
def store(backend):
    from memory.store import get_store

    return get_store(backend["settings"])


def image(tag: str):
    from tools.backends.base import GeneratedAsset

    return GeneratedAsset(kind="image", data=f"png-bytes-for-{tag}-{uuid.uuid4().hex}".encode(), mime="image/png", backend="test")


@pytest.fixture(scope="module")
def made(store):
    out = {}
    for user in ("alice", "bob"):
        for key, idea in IDEAS.items():
            view = store.create(user_id=user, thread_id=f"t-{user}", original_prompt=idea, enhanced_prompt=f"{idea}, detailed, soft light",
                                assets=[image(f"{user}-{key}")])
            out[(user, key)] = view
    return out


def test_backend_is_what_it_claims(backend, store, made):
    url = store.engine.url
    if backend["name"] == "postgres-server":
        assert url.get_backend_name() == "postgresql"
        assert store.index.url and not (store.data_dir / "chroma").exists()  # the index lives in the server
        import chromadb

        chroma = backend["services"][1]
        from memory.vectors import USER_COLLECTION_PREFIX, user_collection_name

        client = chromadb.HttpClient(host="127.0.0.1", port=chroma.port)
        per_user = {c.name: c.count() for c in client.list_collections() if c.name.startswith(USER_COLLECTION_PREFIX)}
        assert per_user == {user_collection_name("alice"): len(made) // 2, user_collection_name("bob"): len(made) // 2}
    else:
        assert url.get_backend_name() == "sqlite" and (store.data_dir / "chroma").is_dir()
    assert store.count() == len(made) and store.index.count() == len(made)


def test_create_and_read_back(store, made):
    fox = made[("alice", "fox")]
    view = store.get(fox.id, user_id="alice")
    assert view.original_prompt == IDEAS["fox"] and view.image.sha256 == fox.image.sha256
    assert open(view.image.path, "rb").read().startswith(b"png-bytes-for-alice-fox")
    assert store.count("alice") == store.count("bob") == len(IDEAS)
    assert [v.id for v in store.list("alice", limit=2)] == [made[("alice", "robot")].id, made[("alice", "whale")].id]


def test_recall_by_meaning(store, made):
    from memory.recall import recall

    result = recall(store, "the fox in the snow", "alice", limit=2)
    assert result.mode == "semantic" and result.creations[0].id == made[("alice", "fox")].id
    result = recall(store, "that glass whale", "bob", limit=1)
    assert [c.id for c in result.creations] == [made[("bob", "whale")].id]


def test_users_are_isolated(store, made):
    from memory.recall import recall

    for user, other in (("alice", "bob"), ("bob", "alice")):
        found = recall(store, "castle on a cliff", user, limit=10).creations
        assert found and all(c.user_id == user for c in found)
        assert made[(other, "castle")].id not in {c.id for c in found}
        assert store.get(made[(other, "castle")].id, user_id=user) is None
        assert all(v.user_id == user for v in store.list(user, limit=50))
    assert recall(store, "castle", "mallory", limit=5).creations == []


def test_recall_by_time_after_reindex(store, made):
    """Back-date a creation in SQL (the truth), rebuild the index from it, and find it by when it was made."""
    from memory.models import CreationRecord
    from memory.recall import recall

    robot = made[("alice", "robot")]
    with store.sessions.begin() as session:
        session.get(CreationRecord, robot.id).created_at = datetime.now(UTC) - timedelta(days=3)
    assert store.reindex() == len(made)
    assert store.index.count() == len(made)
    found = recall(store, "the robot from three days ago", "alice", limit=3)
    assert found.window is not None and [c.id for c in found.creations] == [robot.id]
    today = recall(store, "the robot I made today", "alice", limit=3)
    assert robot.id not in {c.id for c in today.creations}
    recent = recall(store, "what did I make three days ago", "alice", limit=5)
    assert [c.id for c in recent.creations] == [robot.id]


def test_index_repairs_itself_from_sql(backend, store, made):
    """A lost index entry comes back on the next check (the store repairs before writing)."""
    from memory.store import MemoryStore

    fox = made[("bob", "fox")]
    store.index.delete([fox.id])
    assert store.index.count() == len(made) - 1
    fresh = MemoryStore(backend["settings"])  # a new process would check once, at its first use
    fresh.ensure_index()
    assert fresh.index.count() == len(made)


def test_graph_checkpoints_survive_a_new_saver(backend, store):
    """A thread's checkpoints go through SqliteSaver or PostgresSaver and are read back by a fresh connection."""
    from agent.cli import run_turn
    from agent.graph import build_graph
    from memory.session import checkpointer

    saver = checkpointer(backend["settings"])
    expected = "PostgresSaver" if backend["name"] == "postgres-server" else "SqliteSaver"
    assert type(saver).__name__ == expected
    config = {"configurable": {"thread_id": f"thread-{uuid.uuid4().hex[:8]}", "user_id": "carol", "enhance": False}}
    graph = build_graph(checkpointer=saver)
    first = run_turn(graph, "a paper crane origami lamp", config)
    creation_id = first["state"]["creation_id"]
    assert [s["tool"] for s in first["steps"]] == ["text_to_image", "image_to_3d"]
    assert store.get(creation_id, user_id="carol").model is not None

    again = build_graph(checkpointer=checkpointer(backend["settings"]))  # as after a restart
    assert again.get_state(config).values["creation_id"] == creation_id
    second = run_turn(again, "find the paper crane I made", config)
    assert [s["tool"] for s in second["steps"]] == ["recall_similar"]
    assert second["state"]["recalled"][0]["id"] == creation_id
    history = list(again.get_state_history(config))
    assert len(history) >= 8 and len(second["state"]["messages"]) > len(first["state"]["messages"])
    if backend["name"] == "postgres-server":
        import psycopg

        url = backend["settings"].database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (config["configurable"]["thread_id"],)).fetchone()[0]
        assert rows == len(history)
