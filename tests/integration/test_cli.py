"""The `atelier` command line as a user runs it: real processes, real models, offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli_env


def atelier(args, data_dir, input_bytes=None, timeout=300, **env):
    argv = [sys.executable, "-m", "agent.cli", *args]
    return subprocess.run(argv, cwd=ROOT, env=cli_env(data_dir, **env), input=input_bytes, capture_output=True, timeout=timeout)


def test_create_json_then_continue_thread_then_recall(tmp_path):
    data = tmp_path / "data"
    out = atelier(["create", "a glowing dragon standing on a cliff at sunset", "--json", "--user", "ann"], data)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["tool_calls"] == ["enhance_prompt", "text_to_image", "image_to_3d"]
    assert report["original_prompt"] == "a glowing dragon standing on a cliff at sunset"
    assert report["enhanced_prompt"].startswith(report["original_prompt"] + ",")
    assert Path(report["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(report["model"]).read_bytes()[:4] == b"glTF"
    assert report["backends"] == {"image": "sketch", "model": "relief"}
    assert set(report["seconds"]) >= {"enhance_prompt", "text_to_image", "image_to_3d", "total"}
    assert str(data) in report["image"]  # ATELIER_DATA_DIR is honoured

    out = atelier(["create", "just an image of a paper lantern, no 3d", "--json", "--user", "ann", "--thread", "th"], data)
    lantern = json.loads(out.stdout)
    assert lantern["tool_calls"] == ["enhance_prompt", "text_to_image"] and lantern["model"] is None
    out = atelier(["create", "now make it 3D", "--json", "--user", "ann", "--thread", "th"], data)
    follow = json.loads(out.stdout)
    assert follow["tool_calls"] == ["image_to_3d"] and follow["creation_id"] == lantern["creation_id"]

    out = atelier(["recall", "dragon", "--json", "--user", "ann", "--limit", "1"], data)
    found = json.loads(out.stdout)["creations"]
    assert [c["id"] for c in found] == [report["creation_id"]]
    assert json.loads(atelier(["recall", "dragon", "--json", "--user", "someone-else"], data).stdout)["creations"] == []


@pytest.mark.parametrize("args,stdin,message", [
    (["create", ""], None, "the idea is empty"),
    (["create", "   \t "], None, "the idea is empty"),
    (["create", "x" * 4001], None, "the idea is 4001 characters long; the limit is 4000"),
    (["create", "-"], b"a dragon \xff\xfe", "not valid UTF-8"),
    (["create", "a fox", "--frobnicate"], None, "unrecognized arguments: --frobnicate"),
    (["create", "a fox", "--size", "big"], None, "--size must look like 512x512"),
    (["recall", "fox", "--limit", "0"], None, "--limit must be between 1 and 100"),
    (["recall", "x" * 301], None, "the query is 301 characters long; the limit is 300"),
    (["recall", "a fox " * 16_000], None, "the query is 95999 characters long; the limit is 300"),
    (["transcribe", "/nonexistent.wav"], None, "audio file not found"),
    (["frobnicate"], None, "invalid choice"),
], ids=["empty", "whitespace", "too-long", "bad-utf8", "unknown-flag", "bad-size", "bad-limit", "long-query", "huge-query", "missing-audio",
        "bad-command"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, stdin, message):
    data = tmp_path / "data"
    out = atelier(args, data, input_bytes=stdin, timeout=120)
    err = out.stderr.decode()
    assert out.returncode != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (data / "atelier.db").exists() and not (data / "assets").exists()


def test_invalid_utf8_in_argv(tmp_path):
    data = tmp_path / "data"
    argv = [os.fsencode(sys.executable), b"-m", b"agent.cli", b"create", b"caf\xe9 dragon"]
    out = subprocess.run(argv, cwd=ROOT, env=cli_env(data), capture_output=True, timeout=60)
    assert out.returncode == 2 and b"not valid UTF-8" in out.stderr and not data.exists()


def test_unreadable_audio(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all" * 10)
    out = atelier(["transcribe", str(junk)], tmp_path / "data", timeout=120)
    err = out.stderr.decode()
    assert out.returncode == 2 and "could not read audio" in err and len(err.strip().splitlines()) == 1


def test_setup_is_idempotent(tmp_path):
    data = tmp_path / "data"
    for _ in range(2):
        out = atelier(["setup"], data, timeout=300)
        assert out.returncode == 0, out.stderr.decode()
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in out.stdout.decode() and "MISSING" not in out.stdout.decode()


def test_reindex_rebuilds_from_sqlite(tmp_path):
    data = tmp_path / "data"
    atelier(["create", "a tiny house on a giant mushroom", "--json", "--no-3d", "--policy", "router"], data)
    import shutil

    shutil.rmtree(data / "chroma")
    out = atelier(["reindex"], data)
    assert out.returncode == 0 and "indexed 1 creations" in out.stdout.decode()
    found = json.loads(atelier(["recall", "mushroom house", "--json"], data).stdout)["creations"]
    assert found and found[0]["original_prompt"] == "a tiny house on a giant mushroom"


def test_create_without_enhancing_reports_the_stored_prompts_and_recall_clamps_huge_phrases(tmp_path):
    """--no-enhance: the report's prompts are what the database holds (the idea, as given), not null; a recall
    reaching back past year 1 answers (nothing, with a note) instead of an OverflowError."""
    data = tmp_path / "data"
    idea = "a brass owl automaton on a shelf"
    out = atelier(["create", idea, "--json", "--no-enhance", "--no-3d", "--policy", "router"], data)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["tool_calls"] == ["text_to_image"]
    assert report["original_prompt"] == idea and report["enhanced_prompt"] == idea
    stored = json.loads(atelier(["recall", "brass owl", "--json"], data).stdout)["creations"]
    assert [(c["id"], c["original_prompt"], c["enhanced_prompt"]) for c in stored] == [(report["creation_id"], idea, idea)]

    for phrase in ("the owl I made 1000000 days ago", "the owl I made 99999999999 days ago"):
        out = atelier(["recall", phrase, "--json"], data)
        assert out.returncode == 0, out.stderr.decode()
        found = json.loads(out.stdout)
        assert found["creations"] == [] and found["window"][0].startswith("0001-01-02")
        assert "earliest date that can be represented" in found["note"]
    out = atelier(["recall", "owls from the last 99999999999 weeks"], data)
    assert out.returncode == 0 and report["creation_id"] in out.stdout.decode() and "note:" in out.stderr.decode()


def test_recall_lists_results_in_the_order_of_their_scores():
    """Scores 0.8149 (older) and 0.8101 (newer) once came out newer first: the ranking rounded to 2 places."""
    from memory.recall import recall
    from memory.store import CreationView

    def view(cid, day):
        return CreationView(cid, "u", None, None, f"2026-11-{day:02d}T10:00:00+00:00", "complete", "a castle", "a castle", [])

    class Store:  # the narrow part under test is the ranking; the store's search is tested in test_memory.py
        def semantic(self, text, user_id, limit, since=None, until=None):
            return [("old", 0.8149), ("new", 0.8101), ("twin-old", 0.5), ("twin-new", 0.5)]

        def get_many(self, ids, user_id):
            return {"old": view("old", 1), "new": view("new", 20), "twin-old": view("twin-old", 2), "twin-new": view("twin-new", 21)}

    found = recall(Store(), "the castle", "u", limit=10)
    assert [c.id for c in found.creations] == ["old", "new", "twin-new", "twin-old"]  # equal scores: the newer first
    scores = [c.score for c in found.creations]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("variable,value,message", [
    ("ATELIER_IMAGE_BACKENDS", "sketch,sktech", "ATELIER_IMAGE_BACKENDS: unknown backend 'sktech' (known: "),
    ("ATELIER_IMAGE_BACKENDS", " , ", "ATELIER_IMAGE_BACKENDS: names no backend"),
    ("ATELIER_MODEL_BACKENDS", "relief,sketch", "ATELIER_MODEL_BACKENDS: backend 'sketch' does not make models"),
    ("ATELIER_MODEL_BACKENDS", "relief;rm -rf", "ATELIER_MODEL_BACKENDS: 'relief;rm -rf' is not a backend name"),
    ("ATELIER_LLM_URL", "localhost:8080", "ATELIER_LLM_URL: must be an http(s) URL such as http://127.0.0.1:8080/v1"),
    ("ATELIER_CHROMA_URL", "memory-service:8000", "ATELIER_CHROMA_URL: must be an http(s) URL"),
    ("ATELIER_TEXT_TO_IMAGE_APP", "ftp://apps.example.com", "ATELIER_TEXT_TO_IMAGE_APP: unsupported Openfabric app URL"),
    ("ATELIER_IMAGE_TO_3D_APP", "not an app id!", "ATELIER_IMAGE_TO_3D_APP: cannot read Openfabric app"),
    ("ATELIER_OPENFABRIC_ALLOWED_HOSTS", "https://cdn.example.com/", "ATELIER_OPENFABRIC_ALLOWED_HOSTS: 'https://cdn.example.com/' is not a host"),
    ("ATELIER_OPENFABRIC_NODE_DOMAIN", "node3 openfabric", "ATELIER_OPENFABRIC_NODE_DOMAIN: 'node3 openfabric' is not a domain name"),
])
def test_a_setting_wrong_in_form_is_refused_at_start_in_one_line(tmp_path, variable, value, message):
    data = tmp_path / "data"
    out = atelier(["create", "a fox", "--no-enhance", "--no-3d", "--policy", "router"], data, timeout=120, **{variable: value})
    err = out.stderr.decode()
    assert out.returncode == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not data.exists()


def test_chat_keeps_chainlits_files_in_the_data_dir(tmp_path):
    """`atelier chat` once made `.files/` (Chainlit's uploads) in the checkout whatever the data dir: Chainlit's
    app root is now <data dir>/studio, with the checkout's config, readme and public files linked in."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data"
    checkout_files = ROOT / ".files"
    existed = checkout_files.exists()  # other processes (a test importing chainlit) may have made it already
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "chat", "--port", str(port)], cwd=ROOT, env=cli_env(data),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "atelier chat exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "atelier chat did not start"
                time.sleep(0.5)
        assert (data / "studio" / ".files").is_dir()
        # the checkout's public files, config and readme, through the links
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/public/atelier.css", timeout=10) as r:
            assert r.read() == (ROOT / "public" / "atelier.css").read_bytes()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/logo?theme=light", timeout=10) as r:
            assert r.read() == (ROOT / "public" / "logo_light.svg").read_bytes()
        for name in (".chainlit", "chainlit.md", "public"):
            assert (data / "studio" / name).resolve() == ROOT / name
        assert existed or not checkout_files.exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_commands_that_make_nothing_do_not_check_the_backend_lists(tmp_path):
    """The backend check imports the listed backends' modules (scipy, httpx ...): `recall` does not pay for it, and a
    backend list it does not use does not stop it; a form error still does."""
    out = atelier(["recall", "a fox", "--json"], tmp_path / "data", timeout=120, ATELIER_IMAGE_BACKENDS="sketch,not-installed-yet")
    assert out.returncode == 0, out.stderr.decode()
    out = atelier(["recall", "a fox"], tmp_path / "data", timeout=120, ATELIER_CHROMA_URL="chroma:8000")
    assert out.returncode == 2 and "ATELIER_CHROMA_URL: must be an http(s) URL" in out.stderr.decode()
