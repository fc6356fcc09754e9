"""Two OS processes writing to the same data dir (SQLite records, embedded Chroma, asset files) at the same moment,
as the chat (Chainlit) process and the API server do: no "database is locked", every creation exactly once, and
the index still finds every one of them afterwards.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import atelier_env, postgres_available, start_api, start_postgres  # noqa: E402

pytestmark = pytest.mark.timeout(300)

N = 20  # creations per process

RACER = r"""
import os, sys, time, traceback
from memory.settings import MemorySettings
from memory.store import MemoryStore
go, targets = sys.argv[1], sys.argv[2:]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
errors = 0
for target in targets:
    try:
        if target.startswith("postgresql"):
            MemoryStore(MemorySettings(data_dir=os.environ["ATELIER_DATA_DIR"], database_url=target))
        else:
            MemoryStore(MemorySettings(data_dir=target))
    except Exception as exc:
        errors += 1
        print("SCHEMA-ERROR", type(exc).__name__, str(exc).splitlines()[0], flush=True)
print(f"done errors={errors}", flush=True)
"""

WRITER = r"""
import os, sys, time, traceback
from memory.store import get_store
from tools.backends.base import GeneratedAsset
tag, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = get_store()
store.ensure_index()
print("ready", flush=True)
deadline = time.time() + 120
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
errors = 0
things = ["red fox", "blue whale", "green castle", "copper teapot", "paper crane"]
for i in range(n):
    try:
        store.create(user_id=f"user-{tag}", thread_id=f"thread-{tag}", original_prompt=f"{things[i % 5]} number {i} by {tag}",
                     enhanced_prompt=f"{things[i % 5]} {i}, detailed",
                     assets=[GeneratedAsset(kind="image", data=f"{tag}-{i}".encode() * 64, mime="image/png", backend="test")])
    except Exception:
        errors += 1
        traceback.print_exc()
print(f"done errors={errors}", flush=True)
sys.exit(1 if errors else 0)
"""


def start_writer(data_dir: Path, tag: str, n: int, go: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, tag, str(n), str(go)], env=atelier_env(data_dir), cwd=data_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_ready(proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return
        seen.append(line)
        if not line and proc.poll() is not None:
            raise RuntimeError(f"writer exited {proc.returncode}: {''.join(seen)[-3000:]}")
    raise TimeoutError("writer not ready")


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def check_store(data_dir: Path, expected: dict[str, int]) -> None:
    """Counts per user, no duplicates, and every creation found again by its own words (index intact)."""
    from sqlalchemy import select

    from memory.models import CreationRecord
    from memory.settings import MemorySettings
    from memory.store import MemoryStore

    store = MemoryStore(MemorySettings(data_dir=data_dir))
    with store.sessions() as session:
        rows = [(r.id, r.user_id, r.prompt.original) for r in session.scalars(select(CreationRecord))]
    assert len(rows) == len({r[0] for r in rows}) == sum(expected.values())
    for user, n in expected.items():
        assert store.count(user) == n
    store.ensure_index()  # what any recall does first: SQL is the truth, the index catches up from it
    assert store.index.count() == len(rows)
    for cid, user, text in rows:
        assert cid in [hit for hit, _ in store.index.query(text, user, 3)], f"{text!r} not found in the index"
    # And each vector is reachable in the graph: its own embedding finds it first (an id added twice by the
    # two processes would be updated in place by hnswlib, which can leave it unreachable).
    assert store.index.unreachable() == []


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_processes_create_the_schema_at_once(tmp_path, database):
    """Both processes open a fresh database at the same instant (first start of chat + API, or two replicas)."""
    rounds = 8
    pg = None
    if database == "postgres":
        if (why := postgres_available()) is not None:
            pytest.skip(why)
        pg = start_postgres(tmp_path / "pg")
    try:
        if pg:
            import psycopg

            with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
                for i in range(rounds):
                    conn.execute(f"CREATE DATABASE race{i}")
            targets = [pg.extra["sqlalchemy_url"].rsplit("/", 1)[0] + f"/race{i}" for i in range(rounds)]
        else:
            targets = [str(tmp_path / f"race{i}") for i in range(rounds)]
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(go), *targets], env=atelier_env(tmp_path), cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
                 for _ in range(2)]
        try:
            for p in procs:
                wait_ready(p)
            go.touch()
            outputs = [finish(p, timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    finally:
        if pg:
            pg.stop()
    errors = [line for out in outputs for line in out.splitlines() if line.startswith("SCHEMA-ERROR")]
    assert errors == [], errors
    assert all("done errors=0" in out for out in outputs), outputs


def test_two_processes_commit_at_once(tmp_path):
    from memory.settings import MemorySettings
    from memory.store import MemoryStore

    MemoryStore(MemorySettings(data_dir=tmp_path))  # the schema exists (its creation race is the test above)
    go = tmp_path / "go"
    writers = [start_writer(tmp_path, tag, N, go) for tag in ("chat", "api")]
    try:
        for w in writers:
            wait_ready(w)
        started = time.perf_counter()
        go.touch()
        outputs = [finish(w) for w in writers]
        elapsed = time.perf_counter() - started
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    for w, out in zip(writers, outputs):
        assert "database is locked" not in out
        assert w.returncode == 0, out[-3000:]
        assert "done errors=0" in out
    print(f"\n{2 * N} creations from 2 processes in {elapsed:.1f}s ({2 * N / elapsed:.1f}/s)")
    check_store(tmp_path, {"user-chat": N, "user-api": N})


def test_api_server_and_chat_process_write_together(tmp_path):
    """The API server makes creations through the SDK while another process commits its own; afterwards the
    server's recall finds what the other process made (its index handle must not go stale)."""
    from langgraph_sdk import get_sync_client

    server = start_api(tmp_path)  # its start creates the schema before the writer opens the database
    go = tmp_path / "go"
    writer = start_writer(tmp_path, "chat", N, go)
    try:
        client = get_sync_client(url=server.url, api_key=None, headers={"X-Atelier-User": "user-api"}, timeout=300)
        warm = client.threads.create()
        client.runs.wait(warm["thread_id"], "atelier", input={"messages": [{"role": "user", "content": "a tin soldier"}]},
                         config={"configurable": {"enhance": False, "auto_3d": False}})
        wait_ready(writer)
        threads = [client.threads.create()["thread_id"] for _ in range(6)]
        go.touch()
        runs = [client.runs.create(t, "atelier", input={"messages": [{"role": "user", "content": f"a brass lantern number {i}"}]},
                                   config={"configurable": {"enhance": False}}) for i, t in enumerate(threads)]
        for t, run in zip(threads, runs):
            client.runs.join(t, run["run_id"])
            assert client.runs.get(t, run["run_id"])["status"] == "success"
        out = finish(writer)
        assert writer.returncode == 0 and "database is locked" not in out, out[-3000:]
        assert "database is locked" not in server.log_tail(10**7)
        check_store(tmp_path, {"user-chat": N, "user-api": 7})
        # The server (a long-lived process with its own index handle) recalls what the other process wrote.
        chat = get_sync_client(url=server.url, api_key=None, headers={"X-Atelier-User": "user-chat"}, timeout=300)
        thread = chat.threads.create()
        state = chat.runs.wait(thread["thread_id"], "atelier", input={"messages": [{"role": "user", "content": "find the paper crane I made"}]})
        assert state["recalled"], state["messages"][-1]["content"]
        assert all("paper crane" in c["original_prompt"] and c["user_id"] == "user-chat" for c in state["recalled"])
    finally:
        if writer.poll() is None:
            writer.kill()
        server.stop()
