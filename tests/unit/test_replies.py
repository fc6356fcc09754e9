"""The graph's replies say each thing once: on a box with no image model and no Openfabric, three turns in one
thread name what was made and by what, give the placeholder hint (with the one command for real pictures) once,
and never carry URLs, retry timers or the fallback chain; `create --json`'s report keeps the chain with its
reasons. A backend that made this user's earlier creations and fails now is an outage, said plainly."""
from __future__ import annotations

import pytest

from openfabric_fakes import dead_url

IDEAS = ("a red kite over a green hill", "a copper kettle on a stove", "a paper boat on a puddle")


@pytest.fixture
def offline(data_dir, monkeypatch):
    """A new user's box: the default backend order, Openfabric unreachable, no local image or mesh model."""
    from models.settings import reset_settings
    from tools.openfabric.client import reset_state

    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "openfabric,diffusers,sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "openfabric,hunyuan3d,relief")
    monkeypatch.setenv("ATELIER_TEXT_TO_IMAGE_APP", dead_url())
    monkeypatch.setenv("ATELIER_IMAGE_TO_3D_APP", dead_url())
    monkeypatch.setenv("ATELIER_OPENFABRIC_RETRIES", "1")
    monkeypatch.setenv("ATELIER_OPENFABRIC_CONNECT_TIMEOUT", "1")
    reset_settings()
    reset_state()
    yield data_dir
    reset_state()


def _turn(graph, text, thread="t-offline", user="u"):
    from agent.run import run_turn, turn_report

    config = {"configurable": {"thread_id": thread, "user_id": user, "decision_policy": "router", "enhance": False}}
    return turn_report(run_turn(graph, text, config), config)


def test_three_offline_turns_say_the_placeholder_hint_once(offline):
    from agent.graph import build_graph
    from agent.nodes import PLACEHOLDER_HINT
    from memory.session import checkpointer

    graph = build_graph(checkpointer=checkpointer())
    reports = [_turn(graph, idea) for idea in IDEAS]
    replies = [r["reply"] for r in reports]
    print("\n" + "\n---\n".join(replies))
    assert PLACEHOLDER_HINT in replies[0] and "atelier models pull sd-turbo" in replies[0]
    assert all(PLACEHOLDER_HINT not in reply for reply in replies[1:])
    for report in reports:
        reply = report["reply"]
        assert f"Creation {report['creation_id']} is saved" in reply
        assert "Image by sketch" in reply and "3D model by relief" in reply  # what was made, by what
        for noise in ("http", "127.0.0.1", "retry in", "circuit", "unavailable", "attempts", "diffusers", "openfabric"):
            assert noise not in reply.lower(), (noise, reply)
        assert len(reply.splitlines()) <= 4
        # The chain with its reasons is kept for whoever asks (create --json): both Openfabric apps and the local models.
        assert [(f["tool"], f["backend"]) for f in report["fallbacks"]] == [
            ("text_to_image", "openfabric"), ("text_to_image", "diffusers"), ("image_to_3d", "openfabric"), ("image_to_3d", "hunyuan3d")]
        assert all(f["reason"] for f in report["fallbacks"])
    # The creation's details (the studio's history) keep the chain too, from the creation's record.
    from memory.store import MemoryStore
    from ui import views

    view = MemoryStore().get(reports[0]["creation_id"], user_id="u")
    assert [f["backend"] for f in view.image.meta["fallbacks"]] == ["openfabric", "diffusers"]
    details = views.creation_props(view, detail=True)["notes"]
    assert "Openfabric text-to-image unreachable — used the local sketch backend" in details
    assert any(n.startswith("Openfabric image-to-3D unreachable") for n in details) and len(details) == 4
    assert views.creation_props(view)["notes"] == []  # the card in the conversation does not repeat them
        # Another thread is another conversation: the hint is given there once too.
    assert PLACEHOLDER_HINT in _turn(graph, "a glass marble", thread="t-other")["reply"]


def test_a_backend_that_answered_before_and_fails_now_is_reported(offline):
    from agent.graph import build_graph
    from memory.session import checkpointer
    from memory.store import MemoryStore
    from memory.types import GeneratedAsset
    from tools.backends import generate_with_fallback
    from tools.backends.base import ImageRequest

    png = generate_with_fallback("image", ["sketch"], ImageRequest(prompt="a kite", width=128, height=128))[0][0].data
    MemoryStore().create(user_id="u", thread_id="earlier", original_prompt="a kite", enhanced_prompt="a kite",
                         assets=[GeneratedAsset("image", png, "image/png", "openfabric")])  # Openfabric answered then
    graph = build_graph(checkpointer=checkpointer())
    reply = _turn(graph, IDEAS[0], thread="t-outage")["reply"]
    print("\n" + reply)
    assert "Openfabric text-to-image did not answer this time (it made your earlier pictures), so the local sketch backend stood in." in reply
    assert "image-to-3D" not in reply  # it never made this user a model: its failure is the normal offline state
    assert "http" not in reply and "retry in" not in reply
