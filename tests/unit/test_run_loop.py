"""agent/run.py, the one run loop, on both kinds of graph it serves: the in-process graph (the CLI, the studio by
default) and a langgraph RemoteGraph on a real `atelier serve` (the studio's client mode). The review pause is
answered by a callback (sync for the CLI, async for the studio) and resumed with Command(resume=...).
"""
from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from langchain_core.messages import AIMessage

from services import start_api

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = start_api(tmp_path_factory.mktemp("run-loop-api"), ATELIER_LLM_THREADS="1")
    try:
        yield service
    finally:
        service.stop()


def remote(api, user: str):
    from langgraph.pregel.remote import RemoteGraph

    return RemoteGraph("atelier", url=api.url, headers={"X-Atelier-User": user})


def test_remote_graph_pause_then_async_resume_with_an_edit(api):
    """One enhance (the slow part): the sync loop's reviewer gives no answer, so the server's thread stays paused;
    the async loop resumes it with the user's edit, and the report reads the server's state."""
    from langgraph.types import Command

    from agent.run import TurnStream, reply, run_turn, turn_report

    graph = remote(api, "rita")
    thread = str(uuid.uuid4())  # a client's own id (the studio's): created through the API under that id
    graph.sync_client.threads.create(thread_id=thread, metadata={"user_id": "rita"})
    config = {"configurable": {"thread_id": thread, "user_id": "rita", "review_prompt": True, "auto_3d": False}}
    asked, events = [], []

    def no_answer(payload):
        asked.append(payload)
        return None

    paused = run_turn(graph, "a glass jellyfish lamp", config, on_event=events.append, review=no_answer)
    assert [p["type"] for p in asked] == ["review_prompt"] and asked[0]["enhanced_prompt"]
    assert paused["paused"] == asked[0] and [s["tool"] for s in paused["steps"]] == ["enhance_prompt"]
    assert any(e.get("event") == "step_start" for e in events), "custom events are handed to on_event"
    assert graph.get_state(config).next == ("review",)
    assert not paused["state"].get("image")

    edited = "a glass jellyfish lamp, studio light, edited by hand"

    async def resume():
        async def reviewer(payload):  # not asked again: the resume goes past the pause
            raise AssertionError(f"asked again: {payload}")

        stream = TurnStream(graph, None, config, review=reviewer, payload=Command(resume={"prompt": edited}))
        seen = [(mode, chunk) async for mode, chunk in stream]
        return stream.result, seen

    result, seen = asyncio.run(resume())
    assert result["paused"] is None and [s["tool"] for s in result["steps"]] == ["text_to_image"]
    assert any(mode == "custom" and c.get("event") == "progress" for mode, c in seen)
    assert any(mode == "updates" and "tools" in c for mode, c in seen)
    state = result["state"]
    assert state["enhanced_prompt"] == edited  # the resume carried the edit
    assert all(not isinstance(m, dict) for m in state["messages"])  # the wire's dicts became messages
    assert "saved" in reply(state) and graph.get_state(config).next == ()

    report = turn_report(result, config)
    assert report["creation_id"] == state["creation_id"] and report["tool_calls"] == ["text_to_image"]
    assert report["reply"] == reply(state) and report["backends"]["image"] == "sketch"
    record = httpx.get(f"{api.url}/creations/{state['creation_id']}", headers={"X-Atelier-User": "rita"}, timeout=30)
    assert record.status_code == 200 and record.json()["enhanced_prompt"] == edited  # stored by the server
    other = httpx.get(f"{api.url}/creations/{state['creation_id']}", headers={"X-Atelier-User": "sam"}, timeout=30)
    assert other.status_code == 404


def test_in_process_async_stream(data_dir):
    """The studio's default: the in-process graph through the async iterator (no enhance: the LLM is not tested here)."""
    from agent.graph import build_graph
    from agent.run import TurnStream, reply
    from memory.session import checkpointer

    graph = build_graph(checkpointer=checkpointer())
    config = {"configurable": {"thread_id": "loop-1", "user_id": "u", "enhance": False, "auto_3d": False}}

    async def main():
        stream = TurnStream(graph, "a copper kettle", config)
        modes = [mode async for mode, _ in stream]
        return stream.result, modes

    result, modes = asyncio.run(main())
    assert {"custom", "updates"} <= set(modes)
    assert [s["tool"] for s in result["steps"]] == ["text_to_image"]
    assert isinstance(result["state"]["messages"][-1], AIMessage) and "saved" in reply(result["state"])


def test_async_stream_raises_the_graphs_error(data_dir):
    from agent.run import TurnStream

    class Broken:
        def stream(self, *args, **kwargs):
            yield "custom", {"event": "step_start", "tool": "text_to_image"}
            raise RuntimeError("the backend fell over")

    async def main():
        seen = []
        with pytest.raises(RuntimeError, match="fell over"):
            async for item in TurnStream(Broken(), "x", {"configurable": {}}):
                seen.append(item)
        return seen

    assert asyncio.run(main()) == [("custom", {"event": "step_start", "tool": "text_to_image"})]


def test_async_reviewer_runs_in_the_callers_context():
    """The studio's reviewer needs Chainlit's session, kept in context variables: it must run in the iterating task."""
    import contextvars

    from agent.run import TurnStream

    session = contextvars.ContextVar("session")

    class Pausing:  # pauses once, then finishes with what the resume carried
        def __init__(self):
            self.resumed = None

        def stream(self, payload, config, stream_mode=None):
            if getattr(payload, "resume", None) is None:
                yield "updates", {"__interrupt__": [{"value": {"type": "review_prompt"}, "id": "i"}]}
            else:
                self.resumed = payload.resume
                yield "custom", {"event": "step_end", "tool": "text_to_image", "seconds": 0.1}

        def get_state(self, config):
            return type("Snapshot", (), {"values": {"messages": [{"type": "ai", "content": "done"}]}})()

    graph = Pausing()

    async def review(payload):
        return {"prompt": f"edited in {session.get()}"}

    async def main():
        session.set("session-1")
        stream = TurnStream(graph, "x", {"configurable": {}}, review=review)
        seen = [item async for item in stream]
        return stream.result, seen

    result, seen = asyncio.run(main())
    assert graph.resumed == {"prompt": "edited in session-1"}
    assert seen == [("custom", {"event": "step_end", "tool": "text_to_image", "seconds": 0.1})]
    assert result["steps"][0]["tool"] == "text_to_image" and result["state"]["messages"][-1].content == "done"
