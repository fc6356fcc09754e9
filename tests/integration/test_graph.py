"""The agent graph end to end: real llama.cpp, real memory, offline backends. Default policy auto: the packaged
model measures far below the router, so the router decides (test_model_policy_... makes the model decide)."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from sqlalchemy import update


def run(graph, text, thread, user="u", **configurable):
    from agent.cli import run_turn

    config = {"configurable": {"thread_id": thread, "user_id": user, **configurable}}
    return run_turn(graph, text, config)


def tools_called(result):
    return [s["tool"] for s in result["steps"]]


@pytest.fixture
def graph(data_dir):
    from agent.graph import build_graph
    from memory.session import checkpointer

    return build_graph(checkpointer=checkpointer())


def test_idea_then_3d_follow_up_then_chat(graph, data_dir):
    first = run(graph, "a glowing dragon standing on a cliff at sunset", "t1")
    assert tools_called(first) == ["enhance_prompt", "text_to_image", "image_to_3d"]
    state = first["state"]
    assert state["enhanced_prompt"].startswith("a glowing dragon standing on a cliff at sunset")
    assert state["image"]["backend"] == "sketch" and state["model"]["backend"] == "relief"
    assert state["image"]["creation_id"] == state["model"]["creation_id"] == state["creation_id"]
    # the decisions are ordinary LangChain tool calls in the history
    calls = [m.tool_calls[0]["name"] for m in state["messages"] if isinstance(m, AIMessage) and m.tool_calls]
    assert calls == ["enhance_prompt", "text_to_image", "image_to_3d"]

    hello = run(graph, "hi", "t1")
    assert tools_called(hello) == [] and hello["state"]["messages"][-1].content


def test_image_only_then_make_it_3d_acts_on_that_image(graph):
    first = run(graph, "just an image of a red fox in the snow, no 3d", "t2")
    assert tools_called(first) == ["enhance_prompt", "text_to_image"]
    image_creation = first["state"]["creation_id"]
    second = run(graph, "turn the last one into 3D", "t2")
    assert tools_called(second) == ["image_to_3d"]
    assert second["state"]["model"]["creation_id"] == image_creation


def test_remix_recalls_first_and_records_lineage(graph, store):
    base = run(graph, "a stone castle on a hill", "t3")["state"]["creation_id"]
    with store.sessions.begin() as s:  # make it last week's creation
        from memory.models import CreationRecord

        s.execute(update(CreationRecord).where(CreationRecord.id == base).values(created_at=datetime.now(UTC) - timedelta(days=7)))
    store.reindex()
    remix = run(graph, "like the castle from last week but at night", "t4")
    assert tools_called(remix) == ["recall_similar", "enhance_prompt", "text_to_image", "image_to_3d"]
    state = remix["state"]
    assert state["idea"] == "a stone castle on a hill, at night"
    child = store.get(state["creation_id"])
    assert child.parent_id == base and [c.id for c in store.children(base)] == [child.id]
    assert "a remix of “a stone castle on a hill”" in state["messages"][-1].content  # the graph's reply says so


def test_thread_survives_a_restart(data_dir):
    from agent.graph import build_graph
    from memory.session import checkpointer

    first = build_graph(checkpointer=checkpointer())
    made = run(first, "just a picture of a blue ceramic vase, no 3d", "t5")["state"]["creation_id"]
    again = build_graph(checkpointer=checkpointer())  # a new process would build exactly this
    result = run(again, "now make it 3d", "t5")
    assert tools_called(result) == ["image_to_3d"] and result["state"]["creation_id"] == made
    humans = [m.content for m in result["state"]["messages"] if isinstance(m, HumanMessage)]
    assert humans[0].startswith("just a picture")


def test_review_pause_lets_the_user_edit_the_prompt(graph):
    from agent.cli import run_turn

    config = {"configurable": {"thread_id": "t6", "user_id": "u", "review_prompt": True, "auto_3d": False}}
    seen = []
    result = run_turn(graph, "a wooden treasure chest", config, review=lambda payload: seen.append(payload) or {"prompt": "a wooden treasure chest, pixel art"})
    assert seen and seen[0]["type"] == "review_prompt"
    assert tools_called(result) == ["enhance_prompt", "text_to_image"]
    assert result["state"]["enhanced_prompt"] == "a wooden treasure chest, pixel art"


def test_every_backend_failing_is_told_kindly(graph):
    result = run(graph, "a lantern", "t7", image_backends=["nonexistent"])
    reply = result["state"]["messages"][-1].content
    assert "text_to_image failed" in reply and "unknown backend 'nonexistent'" in reply and "Traceback" not in reply


def test_another_users_creation_cannot_be_turned_3d(graph, store):
    alice = run(graph, "just an image of a golden key, no 3d", "t8", user="alice")["state"]["creation_id"]
    from langchain_core.messages import ToolMessage

    result = run(graph, "make it 3d", "t9", user="bob")
    assert store.get(alice).model is None  # bob's request never touched alice's creation
    tool_messages = [json.loads(m.content) for m in result["state"]["messages"] if isinstance(m, ToolMessage)]
    assert all(t.get("creation_id") != alice for t in tool_messages)


def test_model_policy_runs_the_real_model_decisions_end_to_end(graph):
    """With decision_policy=model the embedded LLM alone picks each step (weak, measured in the README);
    whatever it picks, the turn must finish with valid tool calls and a reply."""
    result = run(graph, "a paper boat on a pond", "t10", decision_policy="model")
    called = tools_called(result)
    assert len(called) == len(set(called)) <= 4
    assert set(called) <= {"enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"}
    last = result["state"]["messages"][-1]
    assert isinstance(last, AIMessage) and not last.tool_calls and last.content
    from agent.cli import turn_decisions

    decisions = turn_decisions(result["state"])  # every step was the model's (or a guard's veto of it)
    assert decisions and {d["decided_by"] for d in decisions} <= {"model", "guard"}
    assert [d["tool"] for d in decisions if d["tool"]] == called
