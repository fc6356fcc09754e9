"""Whisper (faster-whisper, packaged tiny.en) on speech synthesised by espeak-ng."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make setup installs it)")


def speak(text, path):
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    return path


def test_transcribes_a_spoken_request(tmp_path):
    from agent.speech import transcribe

    result = transcribe(speak("make one like before, but with wings", tmp_path / "req.wav"))
    words = result.text.lower()
    assert "like before" in words and "wings" in words
    assert result.seconds < result.duration * 3  # well under real time x3 on 2 cores


def test_silence_is_heard_as_nothing(tmp_path):
    from agent.speech import transcribe

    silence = tmp_path / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(silence), "trim", "0", "2"], check=True)
    assert transcribe(silence).heard_nothing


def test_transcribe_cli_json(tmp_path):
    wav = speak("a glowing dragon standing on a cliff at sunset", tmp_path / "idea.wav")
    out = subprocess.run([sys.executable, "-m", "agent.cli", "transcribe", str(wav), "--json"], cwd=ROOT,
                         env=cli_env(tmp_path / "data"), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    text = json.loads(out.stdout)["text"].lower()
    assert "dragon" in text and "cliff" in text and "sunset" in text
