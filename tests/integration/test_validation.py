"""memory/validation.py, the one set of input rules, and the entry points that use it: the graph's own input (the
studio's path and any direct invoke) and the CLI. The API server's use is tested against a real server in
tests/e2e/test_api_server.py (test_input_holes_are_closed)."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from memory import validation as v

from conftest import ROOT, cli_env


@pytest.mark.parametrize("value,accepted", [
    ("alice", "alice"), ("  bob  ", "bob"), ("Zoë 山田", "Zoë 山田"), ("x" * 128, "x" * 128),
    ("", None), ("   ", None), ("x" * 129, None), ("~root", None), ("a\x1bb", None), ("a\x00", None),
    ("a\x9bb", None),  # C1 CSI
    ("a\u202eb", None),  # right-to-left override
    ("a\udcffb", None),  # an undecodable byte from a command line (surrogateescape)
    ("a\nb", None), (42, None), (None, None),
])
def test_one_user_id_rule(value, accepted):
    if accepted is None:
        with pytest.raises(v.InvalidInput):
            v.validate_user_id(value)
    else:
        assert v.validate_user_id(value) == accepted


def test_refusals_never_echo_control_characters():
    with pytest.raises(v.InvalidInput) as e:
        v.validate_user_id("evil\x1b[2J\x1b]0;pwned\x07")
    assert "\x1b" not in str(e.value) and "\x07" not in str(e.value) and "\\x1b" in str(e.value)


def test_ideas_are_stripped_of_control_characters_not_refused():
    assert v.validate_idea("a \x1b[31mred\x1b[0m fox\x00 on a\thill\r\nat dusk\x07", 100) == "a red fox on a\thill\nat dusk"
    assert v.validate_idea("a fox \x1b]0;title\x07in snow", 100) == "a fox in snow"
    assert v.validate_idea("a fox\x9b31m", 100) == "a fox31m"  # a lone C1 control goes, the text stays
    with pytest.raises(v.InvalidInput, match="is empty"):
        v.validate_idea("\x1b[0m \x00", 100)
    with pytest.raises(v.InvalidInput, match="is 101 characters long; the limit is 100"):
        v.validate_idea("x" * 101, 100)
    with pytest.raises(v.InvalidInput, match="is 2000000 characters long; the limit is 100"):
        v.validate_idea("x" * 2_000_000, 100)  # refused before it is cleaned


def test_run_numbers():
    assert v.validate_seed(None) is None and v.validate_seed(0) == 0 and v.validate_seed(2**63 - 1) == 2**63 - 1
    for bad in (-1, 2**63, 99999999999999999999999999, True, 1.5, "7"):
        with pytest.raises(v.InvalidInput, match="seed"):
            v.validate_seed(bad)
    assert v.validate_size(64, 2048) == (64, 2048)
    for w, h in ((63, 512), (512, 2049), (512.0, 512), ("512", 512)):
        with pytest.raises(v.InvalidInput):
            v.validate_size(w, h)
    assert v.validate_steps(None) is None and v.validate_steps(200) == 200
    for bad in (0, 201, -3):
        with pytest.raises(v.InvalidInput, match="steps"):
            v.validate_steps(bad)
    assert v.parse_bounded_int(None, "offset", 0, 0, 10) == 0 and v.parse_bounded_int("7", "offset", 0, 0, 10) == 7
    for bad in ("9223372036854775808", "-1", "11", "1e3", "abc", "1" * 400):
        with pytest.raises(v.InvalidInput, match="offset"):
            v.parse_bounded_int(bad, "offset", 0, 0, 10)


def test_configuration_uses_the_same_rules():
    from agent.configuration import Configuration

    cfg = Configuration.from_runnable_config({"configurable": {"user_id": " ann ", "seed": 5, "width": 640}})
    assert (cfg.user_id, cfg.seed, cfg.width) == ("ann", 5, 640)
    for bad in ({"seed": 2**64}, {"width": 4096}, {"steps": 0}, {"user_id": "a\x1b"}, {"thread_id": "t\x00"}):
        with pytest.raises(ValueError):
            Configuration.from_runnable_config({"configurable": bad})


def test_the_graph_checks_its_own_input(data_dir):
    """What the studio (and any direct caller) gets: the graph cleans and bounds user messages itself, and a bad
    setting stops the run in its first node — before any creation, asset or vector exists."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.graph import build_graph
    from memory.store import get_store

    graph = build_graph(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1", "user_id": "ann", "decision_policy": "router", "enhance": False}}
    with pytest.raises(ValueError, match="the message is 4001 characters long; the limit is 4000"):
        graph.invoke({"messages": [HumanMessage("x" * 4001)]}, config)
    state = graph.get_state(config)  # the thread stays readable (a refusing reducer would poison it)
    assert state.next == ("decide",) and "creation_id" not in state.values

    # Control characters never become state: the messages reducer strips them on the way in.
    from agent.state import add_checked_messages

    cleaned = add_checked_messages([], [{"role": "user", "content": "a \x1b[31mred\x1b[0m fox\x00"},
                                        {"role": "user", "content": [{"type": "text", "text": "owl\x07"}]}])
    assert [m.content for m in cleaned] == ["a red fox", [{"type": "text", "text": "owl"}]]

    bad_seed = {"configurable": {**config["configurable"], "thread_id": "t2", "seed": 2**64}}
    with pytest.raises(ValueError, match="seed must be between 0 and 9223372036854775807"):
        graph.invoke({"messages": [HumanMessage("a red fox on a hill")]}, bad_seed)
    store = get_store()
    assert store.count() == 0
    assets = store.data_dir / "assets"
    assert not assets.exists() or not any(p.is_file() for p in assets.rglob("*"))


def _rows(db) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM creations").fetchone()[0]


@pytest.mark.parametrize("args,message", [
    (["--seed", "99999999999999999999999999"], "seed must be between 0 and 9223372036854775807"),
    (["--seed", "-1"], "seed must be between 0 and 9223372036854775807, not -1"),
    (["--size", "4096x512"], "--size must be between 64x64 and 2048x2048"),
    (["--user", "ann\x1b[2J"], "--user contains control characters: 'ann\\\\x1b[2J'"),
    (["--user", "~root"], "--user may not start with '~'"),
    (["--thread", "t\x07"], "--thread contains control characters"),
], ids=["huge-seed", "negative-seed", "big-size", "esc-user", "reserved-user", "bel-thread"])
def test_cli_refuses_bad_settings_before_any_work(tmp_path, args, message):
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "agent.cli", "create", "a red fox on a hill", "--no-enhance", "--json", *args]
    out = subprocess.run(argv, cwd=ROOT, env=cli_env(data, ATELIER_DECISION_POLICY="router"), capture_output=True, timeout=120)
    err = out.stderr.decode()
    assert out.returncode == 2, err
    assert err.strip().splitlines() == [f"atelier: error: {message}"] or message in err
    assert "\x1b" not in err and "\x07" not in err  # nothing raw reaches the terminal
    assert out.stdout == b""
    assert _rows(data / "atelier.db") == 0
    assert not (data / "assets").exists() or not any(p.is_file() for p in (data / "assets").rglob("*"))


def test_cli_strips_control_characters_from_the_idea(tmp_path):
    import json

    data = tmp_path / "data"
    argv = [sys.executable, "-m", "agent.cli", "create", "a \x1b[31mred\x1b[0m fox\x07 on a hill", "--no-enhance", "--no-3d", "--json"]
    out = subprocess.run(argv, cwd=ROOT, env=cli_env(data, ATELIER_DECISION_POLICY="router"), capture_output=True, timeout=180)
    assert out.returncode == 0, out.stderr.decode()
    assert b"\x1b" not in out.stdout + out.stderr and b"\x07" not in out.stdout + out.stderr
    assert json.loads(out.stdout)["tool_calls"] == ["text_to_image"]
    with sqlite3.connect(data / "atelier.db") as conn:
        assert conn.execute("SELECT original, enhanced FROM prompts").fetchall() == [("a red fox on a hill",) * 2]
