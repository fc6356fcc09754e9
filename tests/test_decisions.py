"""Decision accuracy on the labelled set (tests/data/decisions.jsonl), with the real router and model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.decision import TurnContext, decide, idea_from_request, next_from_plan, plan_for, plausible, remix_idea, validate_call, veto
from models.llm import LLMError
from agent.router import Intent, cue_intent

DATASET = Path(__file__).parent / "data" / "decisions.jsonl"
ITEMS = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]


def test_dataset_is_big_and_varied():
    assert len(ITEMS) >= 60
    kinds = {tuple(i["expected"]) for i in ITEMS}
    assert len(kinds) >= 6  # full chain, image only, 3D only, recall, remix, prompt only, no tool
    assert all(len([i for i in ITEMS if tuple(i["expected"]) == k]) >= 3 for k in kinds)


@pytest.mark.parametrize("policy,threshold", [("router", 0.95), ("hybrid", 0.95)])
def test_accuracy(policy, threshold):
    from benchmarks.decision_accuracy import evaluate

    result = evaluate(policy, ITEMS)
    print(f"\n{policy}: {result['accuracy']:.1%} plan accuracy ({result['model']}), misses: {result['misses']}")
    assert result["accuracy"] >= threshold


class ScriptedLLM:
    """A fake model for the decision-logic unit tests only (tests/test_model_decides.py runs the graph
    against a scripted server; test_graph.py and test_llm_server.py run the real models)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def chat_tools(self, messages, tools, **kwargs):
        self.seen.append((messages, tools))
        answer = self.answers.pop(0)
        if "content" in answer:
            return {"content": answer["content"], "tool_calls": []}
        return {"content": "", "tool_calls": [{"id": "call_1", "name": answer["tool"], "arguments": json.dumps(answer.get("args", {}))}]}


def test_hybrid_overrides_an_implausible_model_choice():
    ctx = TurnContext(request="make it 3d", has_image=False)
    d = decide(ctx, Intent("create", 0.5, 0.01, "knn"), "hybrid", ScriptedLLM([{"tool": "image_to_3d", "args": {"creation_id": "latest"}}]))
    assert d.source == "router" and d.tool == "enhance_prompt" and "vetoed" in d.reason


def test_hybrid_does_not_ask_the_model_when_the_router_is_confident():
    d = decide(TurnContext(request="a red fox"), Intent("create", 0.8, 0.2, "knn"), "hybrid", ScriptedLLM([]))
    assert d.source == "router" and d.tool == "enhance_prompt"  # ScriptedLLM([]) would fail if asked


def test_hybrid_trusts_the_model_when_the_router_is_unsure():
    ctx = TurnContext(request="a thing", has_image=True)
    llm = ScriptedLLM([{"tool": "enhance_prompt", "args": {"idea": "a small thing"}}])
    d = decide(ctx, Intent("chat", 0.4, 0.01, "knn"), "hybrid", llm)
    assert d.source == "model" and d.tool == "enhance_prompt" and d.args == {"idea": "a small thing"}
    tools = llm.seen[0][1]
    assert [t["function"]["name"] for t in tools] == ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"]


def test_model_policy_turns_unusable_answers_into_a_reply():
    class Broken:
        name = "broken"

        def chat_tools(self, messages, tools, **kwargs):
            raise LLMError("model returned invalid JSON: '{not json'")

    assert decide(TurnContext(request="a fox"), Intent("create", 1, 1, "rule"), "model", Broken()).tool is None
    unknown = ScriptedLLM([{"tool": "paint_wall", "args": {}}, {"tool": "paint_wall", "args": {}}])
    d = decide(TurnContext(request="a fox"), Intent("create", 1, 1, "rule"), "model", unknown)
    assert d.tool is None and "no tool named 'paint_wall'" in d.reason and len(unknown.seen) == 2  # one repair round


def test_validation_uses_the_tools_own_schemas():
    assert validate_call("recall_similar", {"query": "castles"}) == ({"query": "castles", "limit": 3}, None)
    assert "prompt" in validate_call("text_to_image", {})[1]
    assert "must not be empty" in validate_call("enhance_prompt", {"idea": "  "})[1]
    assert "no tool named" in validate_call("reply", {})[1]


def test_guard_vetoes():
    assert veto("image_to_3d", TurnContext(request="x", has_image=False))
    assert veto("recall_similar", TurnContext(request="x", has_memory=False))
    assert veto("enhance_prompt", TurnContext(request="x", done=["enhance_prompt"]))
    assert veto("text_to_image", TurnContext(request="x")) is None


def test_auto_resolves_by_the_stored_measurement(data_dir):
    from agent import calibration

    assert calibration.resolve("auto", "gguf:abc").policy == "hybrid"  # never measured: the router decides
    calibration.store("router", {"accuracy": 0.984, "n": 63})
    calibration.store("gguf:abc", {"accuracy": 0.254, "n": 63})
    calibration.store("served:big", {"accuracy": 0.968, "n": 63})
    assert calibration.resolve("auto", "gguf:abc").policy == "hybrid"
    assert calibration.resolve("auto", "served:big").policy == "model"  # 96.8 >= 98.4 - 2
    assert calibration.resolve("router", "served:big").policy == "router"


def test_plan_respects_configuration():
    ctx = TurnContext(request="a fox", enhance=False, auto_3d=False)
    assert plan_for("create", ctx) == ["text_to_image"]
    assert next_from_plan(["image_to_3d"], TurnContext(request="3d", has_image=False)) is None
    assert not plausible("image_to_3d", TurnContext(request="x", has_image=False))
    assert not plausible("enhance_prompt", TurnContext(request="x", done=["enhance_prompt"]))


@pytest.mark.parametrize("text,intent", [
    ("a castle, no 3d please", "image"), ("make it 3d", "to_3d"), ("like the castle from last week but at night", "remix"),
    ("show me the castle from last thursday", "recall"), ("improve this prompt: a cat", "enhance"), ("a red fox", None),
])
def test_cue_rules(text, intent):
    assert cue_intent(text) == intent


def test_arguments_from_requests():
    assert idea_from_request("can you make me a blue ceramic vase") == "a blue ceramic vase"
    assert idea_from_request("just an image of a foggy harbor, no 3d model") .startswith("a foggy harbor")
    assert remix_idea("like the castle from last week but at night", "a stone castle on a hill") == "a stone castle on a hill, at night"
    assert remix_idea("make one like before, but with wings", "a glowing dragon") == "a glowing dragon, with wings"
