"""A creation is written once per decided tool call however often the run is replayed, and what a client was told
finished stays finished: the store's keyed commits (SQLite and a real PostgreSQL), the graph replaying a run
in-process, and the real API server killed with SIGKILL after a run finished and in the middle of one."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from memory.models import Asset
from tools.backends.base import GeneratedAsset

from services import postgres_available, start_api, start_postgres

pytestmark = pytest.mark.timeout(420)

PNG = b"\x89PNG\r\n\x1a\n" + b"idempotency-body"


def image(data: bytes = PNG) -> GeneratedAsset:
    return GeneratedAsset(kind="image", data=data, mime="image/png", backend="test", metadata={})


def model(data: bytes = b"glTF\x02\x00\x00\x00model") -> GeneratedAsset:
    return GeneratedAsset(kind="model", data=data, mime="model/gltf-binary", backend="test", metadata={})


def commit_replays(store, key: str, n: int) -> set[str]:
    """n replays of one tool call committing at the same moment."""
    ids, errors, barrier = [], [], threading.Barrier(n)

    def replay():
        try:
            barrier.wait()
            view = store.create(user_id="u", thread_id="t", original_prompt="an owl", enhanced_prompt="an owl",
                                assets=[image()], idempotency_key=key, in_progress=True)
            ids.append(view.id)
        except Exception as exc:  # pragma: no cover - shown by the assert
            errors.append(repr(exc))

    threads = [threading.Thread(target=replay) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return set(ids)


def test_one_key_one_creation_and_one_model(store):
    key = f"run:{uuid.uuid4()}:text_to_image"
    first = store.create(user_id="u", thread_id="t", original_prompt="an owl", enhanced_prompt="an owl", assets=[image()], idempotency_key=key)
    again = store.create(user_id="u", thread_id="t", original_prompt="an owl", enhanced_prompt="an owl", assets=[image()], idempotency_key=key)
    assert again.id == first.id and store.count() == 1
    assert store.find(key, "u").id == first.id and store.find(key, "someone else") is None
    three_d = f"run:{uuid.uuid4()}:image_to_3d"
    store.add_assets(first.id, "u", [model()], idempotency_key=three_d)
    replayed = store.add_assets(first.id, "u", [model()], idempotency_key=three_d)
    assert [a.kind for a in replayed.assets] == ["image", "model"] and replayed.status == "complete"
    assert store.find_assets(three_d, "u").id == first.id
    other = store.create(user_id="u", thread_id="t", original_prompt="an owl", enhanced_prompt="an owl", assets=[image()],
                         idempotency_key=f"run:{uuid.uuid4()}:text_to_image")
    assert other.id != first.id and store.count() == 2  # another tool call is another creation


def test_concurrent_replays_commit_once_on_sqlite(store):
    ids = commit_replays(store, f"run:{uuid.uuid4()}:text_to_image", 6)
    assert len(ids) == 1 and store.count() == 1


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    why = postgres_available()
    if why:
        print(f"skipping the PostgreSQL replay test: {why}")
        pytest.skip(why)
    service = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield service
    finally:
        service.stop()


def test_concurrent_replays_commit_once_on_postgres(postgres, tmp_path, monkeypatch):
    """The production database: the unique key holds under concurrent replays (the losers' INSERTs fail on the
    constraint and they return the winner's creation)."""
    from memory.store import MemoryStore
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_DATABASE_URL", postgres.extra["sqlalchemy_url"])
    reset_settings()
    try:
        store = MemoryStore()
        ids = commit_replays(store, f"run:{uuid.uuid4()}:text_to_image", 6)
        assert len(ids) == 1 and store.count() == 1
        store.engine.dispose()
    finally:
        reset_settings()


# -- the graph replaying a run (what the API server does when it retries one) ---------------------------------------
def test_a_replayed_run_reuses_what_it_committed(data_dir):
    """The server's retry of a run appends its input again and decides anew (fresh tool call ids) under the same run
    id. First the run is cut off right after text_to_image committed, then replayed twice: one creation, with one
    image and one model, complete. Old code made a creation per replay."""
    from langchain_core.messages import HumanMessage

    from agent.graph import build_graph
    from memory.session import checkpointer
    from memory.store import get_store

    graph = build_graph(checkpointer=checkpointer())
    config = {"configurable": {"thread_id": "replayed", "user_id": "u", "run_id": str(uuid.uuid4()), "enhance": False,
                               "decision_policy": "router"}}
    request = {"messages": [HumanMessage("a brass owl automaton")]}
    for update in graph.stream(request, config, stream_mode="updates"):
        if "tools" in update and any(getattr(m, "name", "") == "text_to_image" for m in update["tools"]["messages"]):
            break  # the process died here: the image is committed, the 3D step never ran
    store = get_store()
    made = store.list("u")
    assert len(made) == 1 and made[0].status == "in_progress"
    for _ in range(2):
        state = graph.invoke(request, config)
    after = store.list("u")
    assert [c.id for c in after] == [made[0].id]
    assert after[0].status == "complete" and sorted(a.kind for a in after[0].assets) == ["image", "model"]
    assert state["creation_id"] == made[0].id
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Asset)) == 2


# -- the real API server and kill -9 ---------------------------------------------------------------------------
def kill9(service) -> None:
    os.killpg(service.proc.pid, signal.SIGKILL)
    service.proc.wait(30)


def creations(data_dir: Path, thread_id: str) -> list[tuple]:
    """(id, status, number of assets) of the thread's creations, read from SQLite as it is on disk."""
    if not (data_dir / "atelier.db").exists():
        return []  # the server has not opened its store yet
    with sqlite3.connect(data_dir / "atelier.db") as db:
        if not db.execute("select name from sqlite_master where name = 'creations'").fetchone():
            return []
        return db.execute("select c.id, c.status, count(a.id) from creations c left join assets a on a.creation_id = c.id "
                          "where c.thread_id = ? group by c.id", (thread_id,)).fetchall()


def settle_runs(client, thread_id: str, timeout: float = 120) -> list[dict]:
    """Wait for the runs the restarted server retries to finish."""
    deadline = time.monotonic() + timeout
    while True:
        runs = client.runs.list(thread_id)
        if all(r["status"] not in ("pending", "running") for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def client_for(service):
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=service.url, api_key=None, headers={"X-Atelier-User": "ann"}, timeout=300)


def test_kill9_after_a_run_finished_keeps_the_thread_and_its_one_creation(tmp_path):
    """The client was told the run finished; SIGKILL at once (well inside the runtime's 10 s flush). After the
    restart the thread is there with the creation in its state, the run is not re-run, and there is one creation.
    Old code: the thread 404'd (lost) while its creation row stayed."""
    data_dir = tmp_path / "data"
    service = start_api(data_dir, ATELIER_LLM_THREADS="1")
    try:
        client = client_for(service)
        thread = client.threads.create()
        tid = thread["thread_id"]
        result = client.runs.wait(tid, "atelier", input={"messages": [{"role": "user", "content": "a brass owl automaton"}]},
                                  config={"configurable": {"enhance": False}})
        assert result["creation_id"]
        kill9(service)
        service = start_api(data_dir, ATELIER_LLM_THREADS="1")
        client = client_for(service)
        runs = settle_runs(client, tid)
        assert [r["status"] for r in runs] == ["success"]
        state = client.threads.get_state(tid)
        assert state["values"]["creation_id"] == result["creation_id"]
        assert creations(data_dir, tid) == [(result["creation_id"], "complete", 2)]
    finally:
        service.stop()


def test_kill9_mid_run_then_restart_finishes_it_once(tmp_path):
    """SIGKILL while the run is inside image_to_3d (its Openfabric host accepts and never answers). The restarted
    server retries the run: the image it committed is found by the tool call's key, the 3D step runs, and the thread
    has exactly one creation, complete. Old code: two creations (one left image_ready forever)."""
    data_dir = tmp_path / "data"
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # connections queue in the backlog and nothing ever answers
    slow = {"ATELIER_MODEL_BACKENDS": "openfabric,relief", "ATELIER_IMAGE_TO_3D_APP": f"http://127.0.0.1:{hang.getsockname()[1]}"}
    service = start_api(data_dir, ATELIER_LLM_THREADS="1", **slow)
    try:
        client = client_for(service)
        tid = client.threads.create()["thread_id"]
        client.runs.create(tid, "atelier", input={"messages": [{"role": "user", "content": "a brass owl automaton"}]},
                           config={"configurable": {"enhance": False}})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (made := creations(data_dir, tid)):
            time.sleep(0.1)
        assert made and made[0][1] == "in_progress" and made[0][2] == 1, made  # the image is in, the 3D step is running
        time.sleep(0.5)
        kill9(service)
        hang.close()
        service = start_api(data_dir, ATELIER_LLM_THREADS="1", ATELIER_MODEL_BACKENDS="relief")
        client = client_for(service)
        runs = settle_runs(client, tid)
        assert [r["status"] for r in runs] == ["success"], runs
        after = creations(data_dir, tid)
        assert after == [(made[0][0], "complete", 2)], after
        assert client.threads.get_state(tid)["values"]["creation_id"] == made[0][0]
    finally:
        hang.close()
        service.stop()
