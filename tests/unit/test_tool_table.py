"""The tool table (tools/specs.py), the graph's passed-in dependencies (tools/deps.py) and the session context
(memory/session.py), end to end through the real graph: real SQLite + Chroma memory, offline backends, the
router's real embeddings, and the scripted OpenAI-compatible model (tests/support/scripted_llm.py) where the model
decides."""
from __future__ import annotations

import time
from typing import Annotated

import pytest
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from scripted_llm import ScriptedLLMServer, call


# -- a fifth tool: one file's worth of code, registered with the one line a tools/<name>.py entry gets ----------
@tool
def echo(text: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
    """Repeat the user's words back exactly."""
    from tools.tools import emit, step_result

    started = time.perf_counter()
    emit({"event": "step_start", "tool": "echo", "input": text})
    return step_result("echo", tool_call_id, {"echoed": text}, started, {}, backend="echo")


def _echo_spec():
    from tools.specs import ToolSpec

    return ToolSpec(echo, label="repeat your words", needs=("request",),
                    summarize=lambda data: f"echoed: {data.get('echoed')}",
                    reply=lambda state, step, note: f"Echo: {step['result']['echoed']}",
                    simulate=lambda args: {"echoed": args.get("text", "")})


@pytest.fixture
def echo_registered():
    from tools.specs import TOOL_TABLE

    spec = TOOL_TABLE.register(_echo_spec())  # the one line
    yield spec
    TOOL_TABLE.unregister("echo")


@pytest.fixture
def served(data_dir):
    with ScriptedLLMServer() as server:
        yield server


def _run(graph, text, thread, user="u", **configurable):
    from agent.run import run_turn, turn_report

    config = {"configurable": {"thread_id": thread, "user_id": user, **configurable}}
    result = run_turn(graph, text, config)
    return result, turn_report(result, config)


def test_a_fifth_tool_is_one_registration(echo_registered, served, store):
    from agent.decision import TurnContext, simulate_plan, veto
    from agent.graph import build_graph
    from agent.router import Intent
    from models.llm import ServerLLM
    from ui import views

    graph = build_graph(InMemorySaver(), store=store, llm=ServerLLM(served.url))
    served.script = [call("echo", text="hello there"), {"content": "Said it back."}]
    result, report = _run(graph, "say hello there back to me", "t-echo", decision_policy="model")

    # the model was shown the tool (name, description, schema from the @tool) and its call ran
    shown = [t["function"]["name"] for t in served.tool_requests[0]["tools"]]
    assert shown[-1] == "echo" and len(shown) == 5
    echo_schema = served.tool_requests[0]["tools"][-1]["function"]
    assert echo_schema["description"].startswith("Repeat the user's words") and list(echo_schema["parameters"]["properties"]) == ["text"]
    # the next decision saw the spec's one-line summary of the result
    tool_lines = [m["content"] for m in served.tool_requests[1]["messages"] if m.get("role") == "tool"]
    assert any("echoed: hello there" in line for line in tool_lines), tool_lines
    # the CLI / API report and the graph's reply show it
    assert report["tool_calls"] == ["echo"] and report["decisions"][0]["decided_by"] == "model"
    assert report["reply"] == "Said it back.\nEcho: hello there"
    assert report["creation_id"] is None and report["image"] is None  # it made nothing
    # the studio's labels come from the spec
    event = report and result["steps"][0]
    assert views.step_title("echo", event).startswith("echo · echo · ")
    assert "echoed: hello there" in views.step_output_end(event)
    assert "couldn't repeat your words: boom" in views.failure_message("echo", "error: boom")
    assert views.step_heading("echo") == "**Repeat your words**"
    # the guard reads its needs; the accuracy benchmark simulates it
    assert veto("echo", TurnContext(request="  ")) == "echo needs a request and there is none"
    script = [call("echo", text="x"), {"content": "ok"}]
    with ScriptedLLMServer() as other:
        other.script = script
        assert simulate_plan("echo x", False, Intent("chat", 0.5, 0.5, "knn"), "model", ServerLLM(other.url)) == ["echo"]


def test_the_table_is_the_only_list_of_tools():
    from agent.decision import agent_tools
    from tools.specs import TOOL_TABLE, ToolSpec

    assert [t.name for t in agent_tools()] == TOOL_TABLE.names() == ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"]
    assert {s.name: s.produces for s in TOOL_TABLE.specs()} == {"enhance_prompt": "prompt", "text_to_image": "image",
                                                                 "image_to_3d": "model", "recall_similar": "recalled"}
    with pytest.raises(ValueError, match="unknown needs"):
        ToolSpec(echo, label="x", needs=("a unicorn",))
    with pytest.raises(ValueError, match="already registered"):
        TOOL_TABLE.register(ToolSpec(TOOL_TABLE["image_to_3d"].tool, label="again"))
    with pytest.raises(KeyError, match="the tools are enhance_prompt"):
        TOOL_TABLE["nope"]


# -- dependencies passed in -------------------------------------------------------------------------------
def test_the_graph_runs_on_the_store_and_llm_it_is_given(served, data_dir, tmp_path, monkeypatch):
    """A store on another data dir and a scripted LLM, passed to build_graph: the process-wide ones are never made."""
    import memory.store as store_module
    import models.llm as llm_module

    monkeypatch.setattr(llm_module, "_llm", None)  # an earlier test may have loaded the process-wide one
    from agent.graph import build_graph
    from memory.settings import MemorySettings
    from memory.store import MemoryStore
    from models.llm import ServerLLM

    elsewhere = MemoryStore(MemorySettings(data_dir=tmp_path / "elsewhere"))
    before = dict(store_module._stores)
    graph = build_graph(InMemorySaver(), store=elsewhere, llm=ServerLLM(served.url))
    served.script = [call("enhance_prompt", idea="a tin robot"), call("text_to_image", prompt="a tin robot, toy photo"),
                     {"content": "Your robot."}]
    result, report = _run(graph, "a tin robot, just the picture", "t-deps", decision_policy="model")
    assert report["tool_calls"] == ["enhance_prompt", "text_to_image"] and report["reply"].startswith("Your robot.")
    made = elsewhere.get(report["creation_id"], user_id="u")
    assert made is not None and made.enhanced_prompt == "a tin robot, toy photo"
    assert report["image"].startswith(str(elsewhere.assets_dir))
    assert store_module._stores == before  # get_store() was never asked
    assert llm_module._llm is None  # nor get_llm()
    assert not (data_dir / "atelier.db").exists()  # nothing written under the process's data dir
    assert served.requests  # the LLM it was given did the work (decisions and the enhancement)


# -- short-term memory that changes the outcome -----------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_make_it_3d_in_a_fresh_thread_means_what_the_user_worked_on_until_the_session_expires(store, monkeypatch):
    import models.llm as llm_module
    from agent.graph import build_graph

    monkeypatch.setattr(llm_module, "_llm", None)  # an earlier test may have loaded the process-wide one
    from memory.session import SessionContext

    clock = Clock()
    session = SessionContext(store.engine, ttl_seconds=600, clock=clock)
    graph = build_graph(InMemorySaver(), store=store, session=session)
    # enhance off: the in-process LLM stays unloaded (the prompt is not what this test is about)
    castle = _run(graph, "just an image of a stone castle on a hill, no 3d", "t1", decision_policy="router", enhance=False)[1]["creation_id"]
    fox = _run(graph, "just an image of a red fox in the snow, no 3d", "t2", decision_policy="router", enhance=False)[1]["creation_id"]
    recalled = _run(graph, "show me the castle I made", "t3", decision_policy="router")[1]
    assert recalled["tool_calls"] == ["recall_similar"] and recalled["recalled"][0] == castle
    # another process (a second store on the same database) sees the same session
    from memory.store import MemoryStore

    assert SessionContext(MemoryStore(store.settings).engine, 600, clock).current("u").creation_id == castle

    clock.now += 300  # within the TTL: "it" is the castle they just recalled, though the fox is newer
    within = _run(graph, "make it 3d", "t4", decision_policy="router")[1]
    assert within["tool_calls"] == ["image_to_3d"] and within["creation_id"] == castle
    assert "newest" not in within["reply"] and within["notes"] == []

    clock.now += 601  # expired: nothing says which; the newest image, and the reply says so
    after = _run(graph, "make it 3d", "t5", decision_policy="router")[1]
    assert after["tool_calls"] == ["image_to_3d"] and after["creation_id"] == fox
    assert "I used your newest one, “" in after["reply"] and "red fox in the snow" in after["reply"] and fox in after["reply"]
    assert "name another if you meant a different one" in after["reply"] and len(after["notes"]) == 1
    assert store.get(fox).model is not None and store.get(castle).model is not None
    assert llm_module._llm is None


def test_the_session_ttl_is_the_setting_and_real_time_expires_it(store, monkeypatch):
    from memory.session import session_context
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_SESSION_TTL_SECONDS", "1")
    reset_settings()
    session = session_context(store)
    assert session.ttl == 1
    session.working_on("u", "c1", "made")
    assert session.current("u").creation_id == "c1" and session.current("someone else") is None
    session.working_on("u", "c2", "recalled", recalled=["c2", "c3"])
    assert session.current("u").recalled == ("c2", "c3")
    session.working_on("u", "c2", "modelled")  # a later step keeps the recall's results
    assert session.current("u").recalled == ("c2", "c3") and session.current("u").reason == "modelled"
    time.sleep(1.2)
    assert session.current("u") is None
