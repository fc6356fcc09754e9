"""The model decides: the graph against a scripted OpenAI-compatible server (tests/support/scripted_llm.py).

What the model calls is what runs, with its arguments; the router's guard vetoes impossible calls; an
invalid call gets one repair round; a content-only answer is the reply; policy auto follows the stored
measurement. The real model paths are in test_llm_server.py (llama_cpp.server) and test_graph.py
(in-process)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage

from conftest import ROOT, cli_env
from scripted_llm import ScriptedLLMServer, call


@pytest.fixture
def served(data_dir, monkeypatch):
    import models.llm as llm_module
    from models.settings import reset_settings

    with ScriptedLLMServer() as server:
        monkeypatch.setenv("ATELIER_LLM_URL", server.url)
        reset_settings()
        monkeypatch.setattr(llm_module, "_llm", None)  # the process-wide LLM is the scripted server for this test
        yield server
    reset_settings()


@pytest.fixture
def graph(data_dir):
    from agent.graph import build_graph
    from memory.session import checkpointer

    return build_graph(checkpointer=checkpointer())


def run(graph, text, thread="t", user="u", **configurable):
    from agent.cli import run_turn, turn_report

    config = {"configurable": {"thread_id": thread, "user_id": user, **configurable}}
    result = run_turn(graph, text, config)
    return result, turn_report(result, config)


def test_the_graph_runs_the_model_calls_with_the_model_arguments(served, graph, store):
    served.script = [call("enhance_prompt", idea="a brass owl automaton with ruby eyes"),
                     call("text_to_image", prompt="brass owl automaton, ruby eyes, victorian workshop, macro photo"),
                     {"content": "Here is your owl; say the word and I'll make it 3D."}]
    result, report = run(graph, "a brass owl automaton, just the picture", decision_policy="model")
    assert report["tool_calls"] == ["enhance_prompt", "text_to_image"]  # the model stopped after the image
    state = result["state"]
    assert state["idea"] == "a brass owl automaton with ruby eyes"  # the model's idea, not a regex's
    creation = store.get(state["creation_id"])
    assert creation.enhanced_prompt == "brass owl automaton, ruby eyes, victorian workshop, macro photo"
    assert report["reply"].startswith("Here is your owl; say the word")
    assert [d["decided_by"] for d in report["decisions"]] == ["model", "model", "model"]
    assert [d["arguments_from"] for d in report["decisions"][:2]] == ["model", "model"]

    # What the model was shown: the standard tools from the @tool objects, tool_choice auto, the conversation.
    first, second = served.tool_requests[0], served.tool_requests[1]
    assert first["tool_choice"] == "auto" and first["model"] == "scripted-8b"
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"]
    assert first["tools"][3]["function"]["parameters"]["properties"].keys() == {"query", "limit"}  # no injected args
    assert first["messages"][0]["role"] == "system" and first["messages"][-1] == {"role": "user", "content": "a brass owl automaton, just the picture"}
    tool_result = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_result and tool_result[0]["content"].startswith("enhanced prompt: a brass owl automaton with ruby eyes")
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "enhance_prompt"


def test_the_model_chains_to_3d_and_recalls_with_its_own_query(served, graph):
    served.script = [call("enhance_prompt", idea="a stone castle on a hill"), call("text_to_image", prompt="a stone castle on a hill, dusk"),
                     call("image_to_3d", creation_id="latest"), {"content": "Castle made."}]
    first, report = run(graph, "a stone castle on a hill", thread="a", decision_policy="model")
    assert report["tool_calls"] == ["enhance_prompt", "text_to_image", "image_to_3d"]
    made = first["state"]["creation_id"]
    served.script = [call("recall_similar", query="stone castle on a hill", limit=1), {"content": "Found it."}]
    again, report = run(graph, "bring back the first one", thread="a", decision_policy="model")
    assert report["tool_calls"] == ["recall_similar"] and report["recalled"] == [made]
    recall_call = [m for m in again["state"]["messages"] if isinstance(m, AIMessage) and m.tool_calls][-1].tool_calls[0]
    assert recall_call["name"] == "recall_similar" and recall_call["args"] == {"query": "stone castle on a hill", "limit": 1}
    # the second turn's request showed the model the earlier turn and what exists
    request = served.tool_requests[-2]
    assert any(m["role"] == "user" and m["content"] == "a stone castle on a hill" for m in request["messages"])
    assert f"creation {made}" in request["messages"][0]["content"]


def test_keep_my_words_skips_enhancement(served, graph, store):
    words = "a lighthouse made of glass, exactly these words"
    served.script = [call("text_to_image", prompt="a lighthouse made of glass"), {"content": "Done, your words as they are."}]
    result, report = run(graph, words, decision_policy="model", auto_3d=False)
    assert report["tool_calls"] == ["text_to_image"]
    assert store.get(result["state"]["creation_id"]).enhanced_prompt == "a lighthouse made of glass"


def test_guard_vetoes_impossible_calls(served, graph):
    served.script = [call("image_to_3d", creation_id="latest")]  # nothing has been made: no image
    _, report = run(graph, "make it 3d", thread="v1", decision_policy="model")
    assert report["tool_calls"] == [] and "no image to turn into 3D" in report["reply"]
    assert report["decisions"][0]["decided_by"] == "guard" and "vetoed image_to_3d" in report["decisions"][0]["reason"]

    served.script = [call("recall_similar", query="my castles")]  # nothing stored
    _, report = run(graph, "show me my castles", thread="v2", decision_policy="model")
    assert report["tool_calls"] == [] and "nothing in your memory" in report["reply"]

    served.script = [call("enhance_prompt", idea="a kite"), call("enhance_prompt", idea="a kite again")]
    _, report = run(graph, "a kite", thread="v3", decision_policy="model")
    assert report["tool_calls"] == ["enhance_prompt"]  # the same tool twice in one turn never runs
    assert report["decisions"][-1]["decided_by"] == "guard" and "already ran" in report["decisions"][-1]["reason"]


def test_an_invalid_call_gets_one_repair_round(served, graph, store):
    served.script = [call("text_to_image", size=3), call("text_to_image", prompt="a paper crane, origami, studio light"),
                     {"content": "Made."}]
    result, report = run(graph, "a paper crane", decision_policy="model", enhance=False, auto_3d=False)
    assert report["tool_calls"] == ["text_to_image"]
    assert store.get(result["state"]["creation_id"]).enhanced_prompt == "a paper crane, origami, studio light"
    repair = served.tool_requests[1]["messages"]
    assert repair[-1]["role"] == "tool" and "invalid arguments for text_to_image" in repair[-1]["content"] and "prompt" in repair[-1]["content"]
    assert report["decisions"][0]["arguments_from"] == "model"


def test_invalid_twice_runs_the_models_tool_with_the_routers_arguments(served, graph, store):
    served.script = [call("text_to_image", prompt=""), {"tool_calls": [("text_to_image", "{not json")]}, {"content": "Made."}]
    result, report = run(graph, "can you make me a blue ceramic vase", decision_policy="model", enhance=False, auto_3d=False)
    assert report["tool_calls"] == ["text_to_image"]
    assert store.get(result["state"]["creation_id"]).enhanced_prompt == "a blue ceramic vase"  # the router's idea
    assert report["decisions"][0]["decided_by"] == "model" and report["decisions"][0]["arguments_from"] == "router"


def test_a_content_only_answer_is_the_reply(served, graph):
    served.script = [{"content": "Hello! Describe something and I will draw it and sculpt it."}]
    result, report = run(graph, "hi there", decision_policy="model")
    assert report["tool_calls"] == []
    assert report["reply"] == "Hello! Describe something and I will draw it and sculpt it."
    finals = [m for m in result["state"]["messages"] if isinstance(m, AIMessage)]
    assert len(finals) == 1  # the model's words, not a second reply on top


def test_auto_follows_the_stored_measurement(served, graph):
    from agent import calibration

    calibration.store("router", {"accuracy": 0.984, "n": 63})
    calibration.store("served:scripted-8b", {"accuracy": 0.97, "n": 63})  # within 2 points: the model decides
    served.script = [call("enhance_prompt", idea="a red kite"), call("text_to_image", prompt="a red kite, beach"), {"content": "Kite."}]
    _, report = run(graph, "a red kite over a beach", thread="auto1", auto_3d=False)  # default policy: auto
    assert [d["decided_by"] for d in report["decisions"]] == ["model", "model", "model"]
    assert report["decisions"][0]["policy"] == "model"

    calibration.store("served:scripted-8b", {"accuracy": 0.254, "n": 63})  # far below: the router decides
    asked = len(served.tool_requests)
    _, report = run(graph, "a glowing dragon standing on a cliff at sunset", thread="auto2")
    assert report["tool_calls"] == ["enhance_prompt", "text_to_image", "image_to_3d"]
    assert {d["decided_by"] for d in report["decisions"] if d["tool"]} == {"router"} and report["decisions"][0]["policy"] == "hybrid"
    assert len(served.tool_requests) == asked  # a confident router does not consult the model


def test_eval_decisions_stores_the_accuracy_keyed_by_the_served_model(served, data_dir):
    from agent import calibration

    served.script = [call("enhance_prompt", idea="x")] * 0
    env = cli_env(data_dir, ATELIER_LOG_LEVEL="WARNING")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "eval", "decisions", "--llm-url", served.url, "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    # The scripted server answers every tool request with "All done." (no tool): right only on the no-tool labels.
    no_tool = sum(1 for i in calibration.load_dataset() if i["expected"] == [])
    assert report["model_key"] == "served:scripted-8b"
    assert report["model_only"]["accuracy"] == round(no_tool / report["model_only"]["n"], 4)
    assert report["router"]["accuracy"] >= 0.95 and report["auto"]["policy"] == "hybrid"
    stored = json.loads((data_dir / "decision_accuracy.json").read_text())
    assert stored["served:scripted-8b"]["accuracy"] == report["model_only"]["accuracy"] and stored["router"]["n"] == 63


def test_eval_decisions_refuses_bad_arguments(data_dir):
    env = cli_env(data_dir)
    bad = subprocess.run([sys.executable, "-m", "agent.cli", "eval", "decisions", "--model", str(data_dir / "missing.gguf")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "is not a file" in bad.stderr and "Traceback" not in bad.stderr
    assert not (data_dir / "decision_accuracy.json").exists()


def test_router_with_no_enhance_never_loads_the_llm(data_dir):
    """Default policy (auto, the packaged model unmeasured → the router decides) and --no-enhance: no LLM load."""
    env = cli_env(data_dir, ATELIER_LOG_LEVEL="INFO")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "create", "a wooden rocking horse", "--no-enhance", "--json"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["tool_calls"] == ["text_to_image", "image_to_3d"]
    assert {d["decided_by"] for d in report["decisions"] if d["tool"]} == {"router"}
    assert "step=decide" in proc.stderr and "step=load_llm" not in proc.stderr
