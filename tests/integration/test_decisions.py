"""Decision accuracy on the labelled set (tests/support/data/decisions.jsonl), with the real router and model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.decision import TurnContext, decide, idea_from_request, next_from_plan, plan_for, plausible, remix_idea, validate_call, veto
from agent.router import Intent, cue_intent
from models.llm import LLMError

DATASET = Path(__file__).resolve().parents[1] / "support" / "data" / "decisions.jsonl"
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
    """A fake model for the decision-logic unit tests only (tests/integration/test_model_decides.py runs the graph
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


# -- "keep my words": enhance_prompt is skipped under every policy, and the cue is cut from the prompt -------------
KEEP = [
    ("a blue umbrella in the rain, use my words exactly", "a blue umbrella in the rain"),
    ("exactly as I wrote it: a red kite over a green hill", "a red kite over a green hill"),
    ("a lighthouse at dusk. Please don't change my prompt!", "a lighthouse at dusk"),
    ("a copper kettle on a stove, no enhancement", "a copper kettle on a stove"),
    ("keep my wording: a teal bicycle against a wall", "a teal bicycle against a wall"),
    ("a stone bridge, without prompt enhancement please", "a stone bridge"),
]


@pytest.mark.parametrize("text,words", KEEP)
def test_keep_my_words_cues(text, words):
    from agent.router import get_router, keeps_words, without_keep_cue

    assert keeps_words(text) and without_keep_cue(text) == words
    assert cue_intent(text) is None  # "my words" is not a reference to "my" past creations (was: recall)
    assert get_router().classify(text).name == "create"
    assert idea_from_request(text) == words


def test_keep_my_words_leaves_other_cues_and_plain_ideas_alone():
    from agent.router import keeps_words, without_keep_cue

    assert cue_intent("a cat on a sofa, no enhancement, no 3d") == "image"
    assert without_keep_cue("a cat on a sofa, no enhancement, no 3d") == "a cat on a sofa, no 3d"
    for plain in ("a glowing dragon on a cliff", "an old book of love words", "improve this prompt: a cat"):
        assert not keeps_words(plain) and without_keep_cue(plain) == plain


@pytest.mark.parametrize("policy", ["router", "hybrid"])
def test_keep_my_words_skips_enhancement_when_the_router_decides(policy):
    from agent.router import get_router

    request = KEEP[0][0]
    intent = get_router().classify(request)
    ctx = TurnContext(request=request)
    assert ctx.keep_words and not ctx.enhance
    d = decide(ctx, intent, policy, ScriptedLLM([]))  # a confident router never asks the model
    assert d.tool == "text_to_image" and d.source == "router"


def test_keep_my_words_overrides_a_model_that_calls_enhance_prompt():
    request = KEEP[0][0]
    for policy, intent in (("model", Intent("create", 1, 1, "rule")), ("hybrid", Intent("create", 0.5, 0.01, "knn"))):
        llm = ScriptedLLM([{"tool": "enhance_prompt", "args": {"idea": "a blue umbrella in the rain, cinematic"}}])
        d = decide(TurnContext(request=request), intent, policy, llm)
        assert d.tool == "text_to_image" and d.args is None, (policy, d)  # the router's arguments: the user's words
        assert "keep their own words" in d.reason
        system = llm.seen[0][0][0]["content"]
        assert "keep their own words: do not call enhance_prompt" in system
    # The model's own rewrite of the words is not sent either.
    llm = ScriptedLLM([{"tool": "text_to_image", "args": {"prompt": "a blue umbrella, cinematic rain, 8k"}}])
    d = decide(TurnContext(request=request), Intent("create", 1, 1, "rule"), "model", llm)
    assert d.tool == "text_to_image" and d.args is None and d.source == "model"


@pytest.fixture
def served(data_dir, monkeypatch):
    import models.llm as llm_module
    from models.settings import reset_settings

    from scripted_llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        monkeypatch.setenv("ATELIER_LLM_URL", server.url)
        reset_settings()
        monkeypatch.setattr(llm_module, "_llm", None)
        yield server
    reset_settings()


@pytest.mark.parametrize("policy", ["router", "hybrid", "auto", "model"])
def test_keep_my_words_through_the_graph_under_every_policy(served, data_dir, policy):
    """The graph, the scripted model calling enhance_prompt whenever it is asked: the image gets the user's words."""
    from agent import calibration
    from agent.graph import build_graph
    from agent.run import run_turn, turn_report
    from memory.session import checkpointer
    from models.llm import current_model_key

    from scripted_llm import call

    calibration.store("router", {"accuracy": 0.98, "n": 63})
    calibration.store(current_model_key(), {"accuracy": 0.98, "n": 63})  # auto resolves to the model for this one
    served.script = [call("enhance_prompt", idea="a blue umbrella in the rain, moody cinematic"),
                     call("text_to_image", prompt="a blue umbrella in the rain, moody cinematic"), {"content": "Here it is."}]
    config = {"configurable": {"thread_id": f"keep-{policy}", "user_id": "u", "decision_policy": policy, "auto_3d": False}}
    report = turn_report(run_turn(build_graph(checkpointer=checkpointer()), KEEP[0][0], config), config)
    assert "enhance_prompt" not in report["tool_calls"] and report["tool_calls"][0] == "text_to_image", report
    assert report["enhanced_prompt"] is None
    from memory.store import MemoryStore

    made = MemoryStore().get(report["creation_id"], user_id="u")
    assert made.enhanced_prompt == "a blue umbrella in the rain" and made.original_prompt == "a blue umbrella in the rain"
    assert bool(served.tool_requests) == (policy in ("auto", "model"))  # router and a sure hybrid never ask


@pytest.mark.parametrize("policy", ["auto", "model"])
def test_keep_my_words_with_the_real_model(data_dir, policy):
    """The packaged SmolLM2 in process. Under auto (it measures far below the router, so the router decides and
    the model is asked where the router is unsure) the image is of the user's words; under model the 135M model
    decides every step (it mostly answers in words): whatever it calls, no enhancement runs."""
    from agent.graph import build_graph
    from agent.run import run_turn, turn_report
    from memory.session import checkpointer
    from memory.store import MemoryStore

    config = {"configurable": {"thread_id": f"keep-real-{policy}", "user_id": "u", "decision_policy": policy, "auto_3d": False}}
    report = turn_report(run_turn(build_graph(checkpointer=checkpointer()), KEEP[1][0], config), config)
    print(f"\nreal model, {policy}, keep my words: tools={report['tool_calls']} decisions={report['decisions']}")
    assert "enhance_prompt" not in report["tool_calls"]
    if policy == "auto":
        assert report["tool_calls"] == ["text_to_image"]
    if "text_to_image" in report["tool_calls"]:
        assert MemoryStore().get(report["creation_id"], user_id="u").enhanced_prompt == KEEP[1][1]
