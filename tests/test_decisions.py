"""Decision accuracy on the labelled set (tests/data/decisions.jsonl), with the real router and model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.decision import Decision, TurnContext, decide, next_from_plan, plan_for, plausible, remix_idea, idea_from_request
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
    """A fake model for the graph-logic tests only (the real-model path is measured above)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)

    def chat(self, messages, **kwargs):
        return json.dumps(self.answers.pop(0))


def test_hybrid_overrides_an_implausible_model_choice():
    ctx = TurnContext(request="make it 3d", has_image=False)
    d = decide(ctx, Intent("create", 0.5, 0.01, "knn"), "hybrid", ScriptedLLM([{"tool": "image_to_3d", "input": "latest"}]))
    assert d.source == "router" and d.tool == "enhance_prompt" and "implausible" in d.reason


def test_hybrid_does_not_ask_the_model_when_the_router_is_confident():
    d = decide(TurnContext(request="a red fox"), Intent("create", 0.8, 0.2, "knn"), "hybrid", ScriptedLLM([]))
    assert d.source == "router" and d.tool == "enhance_prompt"  # ScriptedLLM([]) would fail if asked


def test_hybrid_trusts_the_model_when_the_router_is_unsure():
    ctx = TurnContext(request="a thing", has_image=True)
    d = decide(ctx, Intent("chat", 0.4, 0.01, "knn"), "hybrid", ScriptedLLM([{"tool": "enhance_prompt", "input": "a thing"}]))
    assert d.source == "model" and d.tool == "enhance_prompt"


def test_model_policy_turns_invalid_json_into_a_reply():
    class Broken:
        name = "broken"

        def chat(self, messages, **kwargs):
            return "{not json"

    assert decide(TurnContext(request="a fox"), Intent("create", 1, 1, "rule"), "model", Broken()).tool is None


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
