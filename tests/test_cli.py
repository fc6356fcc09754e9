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
    (["transcribe", "/nonexistent.wav"], None, "audio file not found"),
    (["frobnicate"], None, "invalid choice"),
], ids=["empty", "whitespace", "too-long", "bad-utf8", "unknown-flag", "bad-size", "bad-limit", "missing-audio", "bad-command"])
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
