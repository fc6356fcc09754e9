"""Issue 18's proof: a tool that brings a NEW asset kind (a text caption, tests/support/caption_tool.py) goes in as one
file plus one line, and the router, the model's decision step, the reply, memory, the studio's views and the
history API all take it from the tool table and the kind table — nothing else is edited for it.

Real parts throughout: the real graph, SQLite + Chroma memory, the router's embeddings, the scripted
OpenAI-compatible model server where the model decides, and a real `atelier serve` for the history API."""
from __future__ import annotations

from pathlib import Path

import caption_tool
import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from scripted_llm import ScriptedLLMServer, call
from services import start_api


@pytest.fixture
def caption_registered():
    from tools.specs import TOOL_TABLE

    caption_tool.register_tools(TOOL_TABLE.register)  # the one line
    yield caption_tool.SPEC
    TOOL_TABLE.unregister("write_caption")


def _run(graph, text, thread, user="u", **configurable):
    from agent.run import run_turn, turn_report

    config = {"configurable": {"thread_id": thread, "user_id": user, **configurable}}
    result = run_turn(graph, text, config)
    return result, turn_report(result, config)


def test_the_router_plans_a_new_kind_from_its_cues_and_memory_the_studio_and_the_api_keep_it(caption_registered, store, data_dir):
    from agent.graph import build_graph
    from agent.router import cue_intent
    from tools.kinds import KINDS
    from ui import views

    assert "caption" in KINDS and cue_intent("caption it please") == "write_caption" == cue_intent("write a caption for that")
    assert cue_intent("make it 3d") == "to_3d"  # the built-ins' cues are untouched
    graph = build_graph(InMemorySaver(), store=store)
    made = _run(graph, "just an image of a lighthouse in a storm, no 3d", "t-cap", decision_policy="router", enhance=False)[1]
    assert made["tool_calls"] == ["text_to_image"]
    result, report = _run(graph, "caption it", "t-cap", decision_policy="router")
    cid = made["creation_id"]

    # the router planned it from its own cue words and filled its arguments with the tool's own filler
    assert report["tool_calls"] == ["write_caption"] and report["decisions"][0]["decided_by"] == "router"
    assert report["decisions"][0]["arguments_from"] == "router" and report["creation_id"] == cid
    assert "Caption: A lighthouse in a storm." in report["reply"]
    assert set(report["assets"]) == {"image", "caption"} and report["image"] is None  # the CLI / API turn report
    # the state keeps the creation's assets by kind
    assert set(result["state"]["assets"]) == {"image", "caption"} and result["state"]["assets"]["caption"]["creation_id"] == cid

    # memory: the file is committed beside the image, and the creation says which kinds it holds
    view = store.get(cid, user_id="u")
    caption = view.asset("caption")
    assert caption is not None and caption.mime == "text/plain" and caption.path.endswith(".txt")
    assert Path(caption.path).read_text() == "A lighthouse in a storm."
    assert view.kinds == ["image", "caption"] and view.to_dict()["kinds"] == ["image", "caption"]
    assert view.status == "image_only"  # the image/model words are unchanged: a caption is not a 3D model

    # the studio: the step's card is the generic one for a text kind, and the creation card lists the asset
    step = result["steps"][-1]
    assert views.step_heading("write_caption") == "**Write the caption**"
    assert "Caption: A lighthouse in a storm." in views.step_output_end(step) and f"creation `{cid}`" in views.step_output_end(step)
    props = views.creation_props(view)
    assert props["assets"] == [{"kind": "caption", "label": "caption", "renderer": "text", "backend": "words",
                                "url": views.asset_url(cid, "caption", caption.sha256), "text": "A lighthouse in a storm."}]
    assert props["image_url"] and props["model_url"] is None  # the image card is as before

    # the history API (a real `atelier serve` on this data dir, which never registered the tool) returns it
    service = start_api(data_dir, ATELIER_LLM_THREADS="1")
    try:
        body = httpx.get(f"{service.url}/creations/{cid}", headers={"X-Atelier-User": "u"}, timeout=60).json()
        kinds = {a["kind"]: a for a in body["assets"]}
        assert set(kinds) == {"image", "caption"} and body["kinds"] == ["image", "caption"]
        served = httpx.get(service.url + kinds["caption"]["url"], headers={"X-Atelier-User": "u"}, timeout=60)
        assert served.status_code == 200 and served.text == "A lighthouse in a storm."
        assert served.headers["content-type"].startswith("text/plain")
    finally:
        service.stop()


def test_the_model_calls_the_new_tool_through_the_real_decision_step(caption_registered, store):
    from agent.decision import TurnContext, veto
    from agent.graph import build_graph
    from models.llm import ServerLLM

    with ScriptedLLMServer() as served:
        graph = build_graph(InMemorySaver(), store=store, llm=ServerLLM(served.url))
        made = _run(graph, "just an image of a paper boat, no 3d", "t-m", decision_policy="router", enhance=False)[1]
        served.script = [call("write_caption", creation_id="latest"), {"content": "Captioned."}]
        result, report = _run(graph, "give the picture some words underneath", "t-m", decision_policy="model")
    shown = [t["function"]["name"] for t in served.tool_requests[0]["tools"]]
    assert shown[-1] == "write_caption" and len(shown) == 5
    assert report["tool_calls"] == ["write_caption"] and report["decisions"][0]["decided_by"] == "model"
    assert report["reply"] == "Captioned.\nCaption: A paper boat."
    tool_lines = [m["content"] for m in served.tool_requests[1]["messages"] if m.get("role") == "tool"]
    assert any("caption written for creation" in line for line in tool_lines), tool_lines
    # the next decision's "what exists" names the new kind
    system = [m["content"] for m in served.tool_requests[1]["messages"] if m.get("role") in ("system", "user")]
    assert any(f"- caption: creation {made['creation_id']}" in str(line) for line in system), system
    assert store.get(made["creation_id"], user_id="u").asset("caption") is not None
    # the guard reads its needs: no image, no caption
    assert veto("write_caption", TurnContext(request="caption it", has_image=False)) == "write_caption needs an image and there is none"


def test_without_its_line_nothing_knows_the_tool_or_its_kind():
    from agent.router import cue_intent
    from tools.kinds import KINDS
    from tools.specs import TOOL_TABLE

    assert "write_caption" not in TOOL_TABLE.names() and "caption" not in KINDS
    assert cue_intent("caption it") is None
    assert TOOL_TABLE.asset_kinds() == ["image", "model"]


def test_a_plugin_module_registers_through_the_entry_point_path(monkeypatch):
    """An outside package's `atelier.tools` entry point loads the same way the built-ins do (register_tools)."""
    from importlib.metadata import EntryPoint

    import tools.specs as specs

    entry = EntryPoint(name="caption", value="caption_tool", group=specs.ENTRY_POINT_GROUP)
    monkeypatch.setattr(specs, "entry_points", lambda group: [entry] if group == specs.ENTRY_POINT_GROUP else [])
    table = specs.ToolTable()
    assert table.names()[-1] == "write_caption" and len(table.names()) == 5
    broken = EntryPoint(name="broken", value="no_such_module_here", group=specs.ENTRY_POINT_GROUP)
    monkeypatch.setattr(specs, "entry_points", lambda group: [broken])
    assert specs.ToolTable().names() == ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar"]  # logged, skipped
    from tools.kinds import KINDS

    KINDS.unregister("caption")


def test_an_installed_package_s_entry_point_adds_the_tool(tmp_path, monkeypatch):
    """A package installed with `[project.entry-points."atelier.tools"] caption = "caption_tool"`: its dist-info on
    sys.path is all the table needs (importlib.metadata finds it, as it would in site-packages)."""
    import tools.specs as specs
    from tools.kinds import KINDS

    info = tmp_path / "caption_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: caption-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[atelier.tools]\ncaption = caption_tool\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        table = specs.ToolTable()
        assert table.names() == ["enhance_prompt", "text_to_image", "image_to_3d", "recall_similar", "write_caption"]
        assert table["write_caption"].kind is not None and "caption" in KINDS and table.asset_kinds() == ["image", "model", "caption"]
    finally:
        KINDS.unregister("caption")


def test_the_studio_shows_the_new_kind_from_an_installed_plugin(tmp_path, shots):
    """The studio in a real browser, with the caption tool installed as a package would be (an `atelier.tools`
    entry point on its PYTHONPATH): "caption it" runs the tool and the creation card draws the caption."""
    import ui_helpers as h

    if (why := h.browser_available()) is not None:
        pytest.skip(str(why))
    plugin = tmp_path / "plugin"
    info = plugin / "caption_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: caption-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[atelier.tools]\ncaption = caption_tool\n")
    tests_dir = Path(__file__).parents[1] / "support"  # where caption_tool.py is
    server = h.Studio(tmp_path / "data", env={"PYTHONPATH": f"{h.ROOT}:{tests_dir}:{plugin}"}).start()
    d = h.make_driver()
    try:
        h.open_studio(d, server.url)
        h.send_message(d, "just an image of a lighthouse in a storm, no 3d, use my words")
        h.wait_until(lambda: "is saved" in h.page_text(d), 180, message=f"the image\n{server.log()[-1500:]}")
        h.wait_idle(d)
        h.send_message(d, "caption it")
        card = '[data-atelier-asset="caption"]'
        h.wait_until(lambda: h.count(d, card) == 1, 120, message=f"the caption on the card\n{server.log()[-1500:]}")
        shown = d.find_element("css selector", card).text
        assert "caption:" in shown and "ighthouse in a storm" in shown and "words" in shown, shown
        assert "write_caption" in h.page_text(d)  # the step, titled from the tool table
        h.save_screenshot(d, "12-caption-card", d.find_element("css selector", card), directory=shots)
    finally:
        d.quit()
        server.stop()
