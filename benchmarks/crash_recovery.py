"""kill -9 of the API server, measured: what survives a SIGKILL after a run finished and in the middle of one.

Each round starts `atelier serve` (in-memory runtime) on a fresh data dir, makes one creation through langgraph-sdk,
SIGKILLs the server's process group at the chosen point, restarts it, waits for the runs it retries and counts:

  thread lost      the thread 404s after the restart (its creation row stays in SQL)
  re-run           a run the client saw finish ran again (a second creation id, or a changed state)
  duplicates       creations beyond one for the thread's one request
  unfinished       creations left in_progress / image_ready (half-made, looking like a finished image)

Points: `finished` (kill at once after runs.wait returned: inside the runtime's 10 s flush) and `mid-run` (kill
while image_to_3d waits on an Openfabric host that never answers). --no-flush turns off the runtime flush hook
(ATELIER_API_FLUSH_ON_COMMIT=0) to show what the in-memory runtime alone keeps; the idempotent commits stay on.
Then the cost of the hook: the runtime's pickles after the rounds, and how long writing them once takes.

    .venv/bin/python benchmarks/crash_recovery.py [--rounds 3] [--no-flush] [--json]
    .venv/bin/python benchmarks/crash_recovery.py --scale 10,100,1000 [--state DIR]   # how one flush grows
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from services import start_api  # noqa: E402  (the test suite's server starter: free port, process group, bounded wait)

IDEA = "a brass owl automaton"


def kill9(service) -> None:
    os.killpg(service.proc.pid, signal.SIGKILL)
    service.proc.wait(30)


def creations(data_dir: Path, thread_id: str) -> list[tuple]:
    if not (data_dir / "atelier.db").exists():
        return []
    with sqlite3.connect(data_dir / "atelier.db") as db:
        if not db.execute("select name from sqlite_master where name = 'creations'").fetchone():
            return []
        return db.execute("select c.id, c.status, count(a.id) from creations c left join assets a on a.creation_id = c.id "
                          "where c.thread_id = ? group by c.id", (thread_id,)).fetchall()


def client_for(service):
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=service.url, api_key=None, headers={"X-Atelier-User": "ann"}, timeout=300)


def wait_runs(client, thread_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = client.runs.list(thread_id)
        except Exception:  # the thread is gone: nothing will run
            return
        if all(r["status"] not in ("pending", "running") for r in runs):
            return
        time.sleep(0.5)


def one_round(point: str, env: dict) -> dict:
    from langgraph_sdk.errors import NotFoundError

    data_dir = Path(tempfile.mkdtemp(prefix="atelier-crash-")) / "data"
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    first_env = dict(env)
    if point == "mid-run":
        first_env.update(ATELIER_MODEL_BACKENDS="openfabric,relief", ATELIER_IMAGE_TO_3D_APP=f"http://127.0.0.1:{hang.getsockname()[1]}")
    service = start_api(data_dir, **first_env)
    told_finished = None
    try:
        client = client_for(service)
        tid = client.threads.create()["thread_id"]
        request = {"messages": [{"role": "user", "content": IDEA}]}
        if point == "finished":
            told_finished = client.runs.wait(tid, "atelier", input=request, config={"configurable": {"enhance": False}})["creation_id"]
        else:
            client.runs.create(tid, "atelier", input=request, config={"configurable": {"enhance": False}})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not creations(data_dir, tid):
                time.sleep(0.1)
            time.sleep(0.5)
        kill9(service)
        hang.close()
        service = start_api(data_dir, **env)
        client = client_for(service)
        wait_runs(client, tid)
        try:
            state = client.threads.get_state(tid)["values"]
            lost = False
        except NotFoundError:
            state, lost = {}, True
        rows = creations(data_dir, tid)
        return {
            "point": point, "thread_lost": lost,
            "re_run": bool(told_finished and state and state.get("creation_id") != told_finished) or (told_finished is not None and len(rows) > 1),
            "duplicates": max(0, len(rows) - 1),
            "unfinished": sum(1 for _, status, _ in rows if status in ("in_progress", "image_ready")),
            "statuses": sorted(status for _, status, _ in rows),
            "api_dir": str(data_dir / "api" / ".langgraph_api"),
        }
    finally:
        hang.close()
        service.stop()


def flush_cost(api_dir: Path) -> dict:
    """What one flush writes: every pickle the runtime keeps, loaded and dumped again (PersistentDict.sync does
    pickle.dump(dict(self)) into a temp file and renames it)."""
    _runtime_env()
    files = sorted(api_dir.glob("*.pckl"))  # pathlib matches the dot-files too
    total = sum(f.stat().st_size for f in files)
    dicts = [pickle.loads(f.read_bytes()) for f in files]
    started = time.perf_counter()
    for d in dicts:
        with tempfile.TemporaryFile() as fh:
            pickle.dump(d, fh, 2)
            fh.flush()
    return {"files": len(files), "bytes": total, "seconds": round(time.perf_counter() - started, 4)}


def _runtime_env() -> None:
    # unpickling imports langgraph_api, which reads what `langgraph dev` sets for the in-memory runtime
    for name, value in {"LANGGRAPH_RUNTIME_EDITION": "inmem", "DATABASE_URI": ":memory:", "REDIS_URI": "fake",
                        "MIGRATIONS_PATH": "__inmem"}.items():
        os.environ.setdefault(name, value)


def _cloned(name: str, data: dict, n: int) -> dict:
    """The runtime's dict `name` as it would be with n times its threads: every entry copied under fresh thread
    (and run) ids, the shapes and sizes untouched."""
    import uuid

    def copy(value):  # a pickle round trip: distinct objects, as a restarted runtime has them (a deepcopy would
        return pickle.loads(pickle.dumps(value))  # share the strings and bytes, which pickle then writes once)

    if name == ".langgraph_ops.pckl":
        out = {k: list(v) for k, v in data.items()}
        out["threads"], out["runs"] = [], []
        for _ in range(n):
            new_ids = {t["thread_id"]: uuid.uuid4() for t in data["threads"]}
            out["threads"] += [{**copy(t), "thread_id": new_ids[t["thread_id"]]} for t in data["threads"]]
            out["runs"] += [{**copy(r), "run_id": uuid.uuid4(), "thread_id": new_ids.get(r["thread_id"], uuid.uuid4())}
                            for r in data["runs"]]
        return out
    if name == ".langgraph_retry_counter.pckl":
        return {uuid.uuid4(): v for _ in range(n) for v in data.values()}
    if name.startswith(".langgraph_checkpoint."):  # keyed by thread id (a str), or by tuples that start with it
        out = {}
        for _ in range(n):
            new_ids: dict[str, str] = {}
            for key, value in data.items():
                old_id = key[0] if isinstance(key, tuple) else key
                tid = new_ids.setdefault(old_id, str(uuid.uuid4()))
                out[(tid, *key[1:]) if isinstance(key, tuple) else tid] = copy(value)
        return out
    return dict(data)  # the key-value store: not per thread


def flush_scaling(api_dir: Path, sizes: list[int], repeats: int = 3) -> list[dict]:
    """How one flush grows with the threads the server holds: the runtime's dicts from real finished runs
    (api_dir), cloned to about n threads, each written by the runtime's own PersistentDict.sync (pickle to a temp
    file, rename), CPU time, median of `repeats`. `ops` is .langgraph_ops.pckl alone (threads, runs, assistants)."""
    import statistics

    from langgraph.checkpoint.memory import PersistentDict

    _runtime_env()
    files = {f.name: pickle.loads(f.read_bytes()) for f in sorted(api_dir.glob("*.pckl"))}  # pathlib matches dot-files too
    out_dir = Path(tempfile.mkdtemp(prefix="atelier-flush-scale-"))
    held = max(1, len(files.get(".langgraph_ops.pckl", {}).get("threads", [])))
    rows = []
    for n in sizes:
        copies = max(1, round(n / held))
        timings: dict[str, list[float]] = {}
        sizes_of: dict[str, int] = {}
        for name, data in files.items():
            d = PersistentDict(filename=str(out_dir / name))
            d.update(_cloned(name, data, copies))
            for _ in range(repeats):
                # CPU time of this process (user + system: the pickling and the write): on a shared box the wall
                # time also counts other processes; on an idle one the two are the same
                started = time.process_time()
                d.sync()
                timings.setdefault(name, []).append(time.process_time() - started)
            sizes_of[name] = (out_dir / name).stat().st_size
            del d
        ms = {name: statistics.median(t) * 1000 for name, t in timings.items()}
        full = sum(ms.values())
        ops_only = ms.get(".langgraph_ops.pckl", 0.0) + ms.get(".langgraph_retry_counter.pckl", 0.0)
        rows.append({"threads": copies * held, "bytes": sum(sizes_of.values()), "ops_bytes": sizes_of.get(".langgraph_ops.pckl", 0),
                     "flush_ms": round(full, 2), "ops_flush_ms": round(ops_only, 2),
                     # one run: Threads.put (or Runs.put creating it), Runs.put, set_joint_status
                     "per_run_ms_every_flush_all": round(3 * full, 1), "per_run_ms_ops_then_all": round(2 * ops_only + full, 1)})
    return rows


def loaded_flush_cost(n_threads: int, env: dict) -> dict:
    """The flush cost once the runtime holds n finished threads (each one creation)."""
    data_dir = Path(tempfile.mkdtemp(prefix="atelier-flush-")) / "data"
    service = start_api(data_dir, **env)
    try:
        client = client_for(service)
        tids = [client.threads.create()["thread_id"] for _ in range(n_threads)]
        for tid in tids:
            client.runs.create(tid, "atelier", input={"messages": [{"role": "user", "content": IDEA}]},
                               config={"configurable": {"enhance": False}})
        for tid in tids:
            wait_runs(client, tid, timeout=600)
    finally:
        service.stop()
    return {"threads": n_threads, **flush_cost(data_dir / "api" / ".langgraph_api")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-flush", action="store_true", help="without the runtime flush hook")
    parser.add_argument("--load", type=int, default=0, help="also measure one flush with this many finished threads")
    parser.add_argument("--scale", help="only measure how one flush grows: comma-separated thread counts (e.g. "
                        "10,100,1000), cloned from the runtime state of real runs (one round first, or --state DIR)")
    parser.add_argument("--state", type=Path, help="with --scale: a .langgraph_api folder of finished runs to clone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.scale:
        return scale_main(args)
    env = {"ATELIER_LLM_THREADS": "1"}
    if args.no_flush:
        env["ATELIER_API_FLUSH_ON_COMMIT"] = "0"
    results = [one_round(point, env) for point in ("finished", "mid-run") for _ in range(args.rounds)]
    summary = {}
    for point in ("finished", "mid-run"):
        rs = [r for r in results if r["point"] == point]
        summary[point] = {k: sum(int(r[k]) for r in rs) for k in ("thread_lost", "re_run", "duplicates", "unfinished")}
        summary[point]["rounds"] = len(rs)
        summary[point]["statuses"] = [r["statuses"] for r in rs]
    cost = flush_cost(Path(results[-1]["api_dir"]))
    out = {"flush_hook": not args.no_flush, "summary": summary, "flush": cost}
    if args.load:
        out["flush_loaded"] = loaded_flush_cost(args.load, env)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"flush hook: {'on' if out['flush_hook'] else 'off (ATELIER_API_FLUSH_ON_COMMIT=0)'}")
    print("| kill -9 point | rounds | thread lost | finished run re-run | duplicate creations | left half-made | statuses |")
    print("|---|---|---|---|---|---|---|")
    for point, s in summary.items():
        print(f"| {point} | {s['rounds']} | {s['thread_lost']} | {s['re_run']} | {s['duplicates']} | {s['unfinished']} | {s['statuses']} |")
    print(f"one flush of the runtime state after a round: {cost['files']} files, {cost['bytes']} bytes, {cost['seconds'] * 1000:.1f} ms")
    if "flush_loaded" in out:
        c = out["flush_loaded"]
        print(f"one flush with {c['threads']} finished threads: {c['files']} files, {c['bytes']} bytes, {c['seconds'] * 1000:.1f} ms")
    return 0


def scale_main(args) -> int:
    sizes = [int(n) for n in args.scale.split(",") if n.strip()]
    state = args.state
    if state is None:  # one real finished run on a fresh server, stopped cleanly so it writes its files
        data_dir = Path(tempfile.mkdtemp(prefix="atelier-flush-")) / "data"
        service = start_api(data_dir, ATELIER_LLM_THREADS="1")
        try:
            client = client_for(service)
            tid = client.threads.create()["thread_id"]
            client.runs.wait(tid, "atelier", input={"messages": [{"role": "user", "content": IDEA}]},
                             config={"configurable": {"enhance": False}})
        finally:
            service.stop()
        state = data_dir / "api" / ".langgraph_api"
    rows = flush_scaling(state, sizes)
    if args.json:
        print(json.dumps({"state": str(state), "rows": rows}))
        return 0
    print(f"cloned from {state}\n\n| threads held | state on disk | one flush, all files (CPU) | ops files only | per run: 3 full flushes "
          "(before) | per run: 2 ops + 1 full (now) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['bytes'] / 2**20:.1f} MB | {r['flush_ms']:.1f} ms | {r['ops_flush_ms']:.1f} ms | "
              f"{r['per_run_ms_every_flush_all']:.0f} ms | {r['per_run_ms_ops_then_all']:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
