"""agent/inmem_durability.py: which of the in-memory runtime's files each flushed operation writes. The promise
itself (kill -9 keeps what a client was told) is tested on the real server in tests/e2e/test_idempotency.py."""
from __future__ import annotations

import asyncio
import pickle

import pytest
from langgraph.checkpoint.memory import PersistentDict
from langgraph_runtime_inmem import _persistence, database, ops

from agent import inmem_durability

RUNTIME_FILES = (".langgraph_ops.pckl", ".langgraph_retry_counter.pckl", ".langgraph_checkpoint.1.pckl",
                 ".langgraph_checkpoint.2.pckl", "store.pckl")


@pytest.fixture
def runtime_dicts(tmp_path, monkeypatch):
    """Real PersistentDicts under the runtime's file names, registered where the runtime's flush loop looks."""
    dicts = {}
    for name in RUNTIME_FILES:
        d = PersistentDict(filename=str(tmp_path / name))
        d["entry"] = name
        dicts[name] = d
    monkeypatch.setattr(_persistence, "_stores", {d.filename: (lambda d=d: d) for d in dicts.values()})
    return tmp_path, dicts


def _written(folder) -> dict:
    return {name: pickle.loads((folder / name).read_bytes()) for name in RUNTIME_FILES if (folder / name).exists()}


def test_an_ops_flush_writes_threads_runs_and_retries_but_not_the_checkpoints(runtime_dicts):
    folder, dicts = runtime_dicts
    inmem_durability.flush_all("ops")
    assert _written(folder) == {".langgraph_ops.pckl": {"entry": ".langgraph_ops.pckl"},
                                ".langgraph_retry_counter.pckl": {"entry": ".langgraph_retry_counter.pckl"}}
    dicts[".langgraph_checkpoint.1.pckl"]["run"] = "finished"
    inmem_durability.flush_all("all")
    written = _written(folder)
    assert set(written) == set(RUNTIME_FILES)
    assert written[".langgraph_checkpoint.1.pckl"] == {"entry": ".langgraph_checkpoint.1.pckl", "run": "finished"}
    with pytest.raises(ValueError, match="all | ops"):
        inmem_durability.flush_all("checkpoints")


def test_a_wrapped_operation_has_written_its_files_when_it_returns(runtime_dicts):
    folder, dicts = runtime_dicts

    async def finish_run():  # stands in for Threads.set_joint_status: the graph wrote checkpoints meanwhile
        dicts[".langgraph_checkpoint.2.pckl"]["final"] = "state"
        return "done"

    async def create_thread():  # stands in for Threads.put
        dicts[".langgraph_ops.pckl"]["thread"] = "new"
        return "created"

    assert asyncio.run(inmem_durability._flushing(create_thread, "ops")()) == "created"
    assert _written(folder)[".langgraph_ops.pckl"]["thread"] == "new"
    assert ".langgraph_checkpoint.2.pckl" not in _written(folder)
    assert asyncio.run(inmem_durability._flushing(finish_run, "all")()) == "done"
    assert _written(folder)[".langgraph_checkpoint.2.pckl"]["final"] == "state"


def test_the_classification_matches_the_installed_runtime():
    """Every operation named exists in langgraph_runtime_inmem.ops, the ops files are the runtime's own names, and
    the operations that end a run or move checkpoints write everything."""
    for (class_name, name), which in inmem_durability.FLUSHED_OPERATIONS.items():
        assert callable(getattr(getattr(ops, class_name), name)), (class_name, name)
        assert which in ("ops", "all")
    assert set(inmem_durability.OPS_FILES) == {database.OPS_FILENAME.split("/")[-1], database.RETRY_COUNTER_FILENAME.split("/")[-1]}
    assert {k for k, v in inmem_durability.FLUSHED_OPERATIONS.items() if v == "all"} == {
        ("Threads", "set_joint_status"), ("Threads", "copy"), ("Threads", "delete")}
