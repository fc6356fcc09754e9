"""The studio's parts without a browser: messages, voice end-pointing, users, settings, the thread store."""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import wave

import numpy as np
import pytest

from ui import auth, settings_panel, views
from ui.voice import VoiceBuffer


# -- messages -------------------------------------------------------------------------------------
def test_fallback_is_named_specifically():
    attempts = [{"backend": "openfabric", "ok": False, "reason": "manifest: cannot connect to https://x ([Errno -2] Name or service not known)"},
                {"backend": "sketch", "ok": True, "reason": ""}]
    assert views.fallback_notes("text_to_image", attempts, "sketch") == [
        "Openfabric text-to-image unreachable — used the local sketch backend"]
    assert views.fallback_notes("image_to_3d", [{"backend": "openfabric", "ok": False, "reason": "HTTP 401 Unauthorized"}], "relief") == [
        "Openfabric image-to-3D refused the credentials — used the local relief backend"]


def test_failures_read_as_sentences_not_tracebacks():
    reason = ("error: every image backend failed (openfabric: openfabric image app f09 (https://f09.node3.openfabric.network): "
              "manifest: cannot connect to https://f09.node3.openfabric.network ([Errno -2] Name or service not known) (after 3 attempts); "
              "sketch: sketch needs a non-empty prompt)")
    text = views.failure_message("text_to_image", reason)
    assert text.startswith("Sorry — I couldn't make the image: Openfabric text-to-image unreachable; the local sketch backend failed")
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: bad input'
    assert "Traceback" not in views.failure_message("image_to_3d", trace)
    assert "bad input" in views.failure_message("image_to_3d", trace)
    assert "no image" in views.failure_message("image_to_3d", "error: there is no image to turn into 3D yet").lower()
    assert len(views.unexpected_error(RuntimeError("x" * 5000))) < 400


def test_step_texts_carry_backend_and_seconds():
    event = {"event": "step_end", "tool": "text_to_image", "seconds": 1.234, "backend": "sketch",
             "attempts": [{"backend": "openfabric", "ok": False, "reason": "timed out"}],
             "result": {"creation_id": "abc123", "backend": "sketch", "is_sketch": True}}
    assert views.step_title("text_to_image", event) == "text_to_image · sketch · 1.2 s"
    out = views.step_output_end(event)
    assert "**sketch**" in out and "1.23 s" in out and "placeholder sketch" in out and "unreachable" in out
    enhance = views.step_output_end({"tool": "enhance_prompt", "seconds": 0.5, "result": {"enhanced_prompt": "a fox, oil painting", "source": "llm"}})
    assert enhance.startswith("a fox, oil painting") and "llm" in enhance
    recall = views.step_output_end({"tool": "recall_similar", "seconds": 0.1, "result": {"mode": "semantic", "window": "last week",
                                                                                      "creations": [{"creation_id": "c1", "prompt": "a castle"}]}})
    assert "1 found (by meaning, last week)" in recall and "a castle" in recall
    assert views.progress_line({"fraction": 0.5, "message": "relief: building"}) == "50% · relief: building"


# -- voice ----------------------------------------------------------------------------------------
def _pcm(seconds: float, rate: int, amplitude: float, freq: float = 220.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    signal = amplitude * np.sin(2 * np.pi * freq * t) + np.random.default_rng(0).normal(0, 30, t.size)
    return signal.astype("<i2").tobytes()


def _feed(buffer: VoiceBuffer, pcm: bytes, rate: int, chunk: int = 4096, t0: float = 0.0) -> tuple[bool, float]:
    elapsed = t0
    for i in range(0, len(pcm), chunk * 2):
        part = pcm[i:i + chunk * 2]
        elapsed += 1000.0 * (len(part) // 2) / rate
        if buffer.add(part, elapsed):
            return True, elapsed
    return False, elapsed


def test_voice_ends_after_a_pause_and_measures_the_real_rate():
    rate = 24000  # what the browser really records at, whatever the buffer was told
    buffer = VoiceBuffer(sample_rate=16000)
    done, t = _feed(buffer, _pcm(0.5, rate, 0), rate)
    assert not done
    done, t = _feed(buffer, _pcm(1.5, rate, 6000), rate, t0=t)
    assert not done and buffer.heard_speech
    done, t = _feed(buffer, _pcm(2.0, rate, 0), rate, t0=t)
    assert done and buffer.reason == "pause"
    assert buffer.sample_rate == 24000
    with wave.open(io.BytesIO(buffer.wav_bytes())) as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1 and wav.getsampwidth() == 2


def test_voice_gives_up_on_noise_only():
    buffer = VoiceBuffer(sample_rate=16000, no_speech_ms=3000)
    done, _ = _feed(buffer, _pcm(4.0, 16000, 0), 16000)
    assert done and buffer.reason == "no_speech" and not buffer.heard_speech


# -- users ----------------------------------------------------------------------------------------
def test_users_are_parsed_and_checked():
    users = auth.parse_users("alice:pw1, bob:p:w:2\ncarol:sha256:" + hashlib.sha256(b"secret").hexdigest())
    assert set(users) == {"alice", "bob", "carol"} and users["bob"] == "p:w:2"
    assert auth.check_password(users, "alice", "pw1")
    assert not auth.check_password(users, "alice", "pw2")
    assert not auth.check_password(users, "mallory", "pw1")
    assert auth.check_password(users, "carol", "secret") and not auth.check_password(users, "carol", "sha256:x")
    with pytest.raises(auth.AuthConfigError):
        auth.parse_users("alice")
    with pytest.raises(auth.AuthConfigError):
        auth.parse_users("al ice:pw")
    assert auth.parse_users("") == {}


def test_secret_is_made_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    auth.ensure_secret(tmp_path)
    first = os.environ["CHAINLIT_AUTH_SECRET"]
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET")
    auth.ensure_secret(tmp_path)
    assert os.environ["CHAINLIT_AUTH_SECRET"] == first and len(first) >= 32
    assert (tmp_path / "ui_auth_secret").stat().st_mode & 0o077 == 0


# -- settings -------------------------------------------------------------------------------------
def test_settings_become_configuration(monkeypatch):
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "openfabric,sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "relief")
    reset_settings()
    try:
        ids = [w.id for w in settings_panel.widgets()]
        assert "image_backend" in ids and "model_backend" not in ids  # a choice only where several are configured
        assert {"enhance", "auto_3d", "review_prompt", "size", "steps", "seed", "decision_policy"} <= set(ids)
        cfg, problems = settings_panel.to_configurable({"image_backend": "sketch", "size": "768x512", "seed": "42", "steps": 20,
                                                        "enhance": False, "review_prompt": True, "decision_policy": "router"})
        assert cfg["image_backends"] == ["sketch", "openfabric"] and (cfg["width"], cfg["height"]) == (768, 512)
        assert cfg["seed"] == 42 and cfg["steps"] == 20 and cfg["enhance"] is False and cfg["review_prompt"] is True
        assert cfg["decision_policy"] == "router" and not problems
        cfg, problems = settings_panel.to_configurable({"seed": "forty-two", "size": "huge"})
        assert "seed" not in cfg and len(problems) == 2
        # the graph's own rules: a seed past 2**63-1 or a 4096 px side is a note, never a failed turn
        cfg, problems = settings_panel.to_configurable({"seed": "99999999999999999999999999", "size": "4096x512", "steps": 500})
        assert "seed" not in cfg and "width" not in cfg and "steps" not in cfg and len(problems) == 3
        assert any("seed must be between 0 and" in p for p in problems)
        from agent.configuration import Configuration

        Configuration(**{k: v for k, v in settings_panel.to_configurable({})[0].items()})  # always a valid configuration
    finally:
        reset_settings()


# -- thread store ---------------------------------------------------------------------------------
def test_thread_store_round_trip(tmp_path):
    from chainlit.types import Pagination, ThreadFilter
    from chainlit.user import User

    from ui.datalayer import SQLiteDataLayer

    async def scenario():
        layer = SQLiteDataLayer(tmp_path / "threads.sqlite")
        alice = await layer.create_user(User(identifier="alice"))
        bob = await layer.create_user(User(identifier="bob"))
        assert (await layer.get_user("alice")).id == alice.id
        await layer._upsert_step({"id": "s1", "threadId": "t1", "type": "user_message", "name": "alice", "output": "a fox",
                                  "createdAt": "2025-01-01T00:00:00Z"})
        await layer.update_thread("t1", name="a fox", user_id=alice.id, metadata={"atelier_settings": {"enhance": False}})
        await layer._upsert_step({"id": "s2", "threadId": "t1", "type": "assistant_message", "name": "Atelier", "output": "made it",
                                  "createdAt": "2025-01-01T00:00:01Z"})
        await layer._upsert_step({"id": "s2", "threadId": "t1", "type": "assistant_message", "name": "Atelier", "output": "made it!",
                                  "createdAt": "2025-01-01T00:00:01Z"})
        thread = await layer.get_thread("t1")
        assert thread["userIdentifier"] == "alice" and thread["name"] == "a fox"
        assert [s["output"] for s in thread["steps"]] == ["a fox", "made it!"]
        assert thread["metadata"]["atelier_settings"] == {"enhance": False}
        assert await layer.get_thread_author("t1") == "alice" and await layer.get_thread_author("nope") == ""
        mine = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=alice.id))
        theirs = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=bob.id))
        assert [t["id"] for t in mine.data] == ["t1"] and theirs.data == []
        found = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=alice.id, search="made it"))
        assert [t["id"] for t in found.data] == ["t1"]
        await layer.delete_thread("t1")
        assert await layer.get_thread("t1") is None
        await layer.close()

    asyncio.run(scenario())
