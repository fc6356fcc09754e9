"""agent.webapp's identity rules, in-process: bearer tokens, the X-Atelier-User header, config/metadata claims."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from langgraph_sdk import Auth

from agent import webapp
from models.settings import reset_settings


def ctx(identity: str):
    return SimpleNamespace(user=SimpleNamespace(identity=identity), permissions=[])


def run_value(configurable=None, metadata=None, config_metadata=None):
    config = {"configurable": dict(configurable or {})}
    if config_metadata is not None:
        config["metadata"] = config_metadata
    return {"thread_id": None, "metadata": dict(metadata or {}), "kwargs": {"config": config}}


def status(exc_info) -> int:
    return exc_info.value.status_code


def test_header_or_anonymous(monkeypatch):
    monkeypatch.delenv("ATELIER_API_KEYS", raising=False)
    reset_settings()
    assert webapp.identify({b"x-atelier-user": b"alice"}, None)["identity"] == "alice"
    anonymous = webapp.identify({}, None)
    assert anonymous["identity"] == webapp.ANONYMOUS and anonymous["is_authenticated"] is False
    for bad in (b"~root", b"a\x01b", b"x" * 200):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            webapp.identify({b"x-atelier-user": bad}, None)
        assert status(e) == 401


def test_tokens_when_configured(monkeypatch):
    monkeypatch.setenv("ATELIER_API_KEYS", "alice:s3cret-a, bob:s3cret-b")
    reset_settings()
    assert webapp.identify({}, "Bearer s3cret-b")["identity"] == "bob"
    # A header claim means nothing once tokens are on.
    assert webapp.identify({b"x-atelier-user": b"alice"}, "Bearer s3cret-b")["identity"] == "bob"
    for authorization in (None, "Bearer nope", "Basic s3cret-a", "Bearer "):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            webapp.identify({b"x-atelier-user": b"alice"}, authorization)
        assert status(e) == 401


def test_run_user_is_forced_to_the_caller():
    value = run_value({"user_id": "alice"})
    assert asyncio.run(webapp.on_run_create(ctx("alice"), value)) == {"user_id": "alice"}
    value = run_value()
    asyncio.run(webapp.on_run_create(ctx("alice"), value))
    assert value["kwargs"]["config"]["configurable"]["user_id"] == "alice" and value["metadata"]["user_id"] == "alice"
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(webapp.on_run_create(ctx("bob"), run_value({"user_id": "alice"})))
    assert status(e) == 403
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(webapp.on_run_create(ctx("bob"), run_value(metadata={"user_id": "alice"})))
    assert status(e) == 403


def test_anonymous_runs_take_the_claimed_user():
    anon = ctx(webapp.ANONYMOUS)
    for value, user in ((run_value({"user_id": "carol"}), "carol"), (run_value(metadata={"user_id": "dave"}), "dave"),
                        (run_value(config_metadata={"user_id": "erin"}), "erin"), (run_value(), "local")):
        assert asyncio.run(webapp.on_run_create(anon, value)) == {"user_id": user}
        assert value["kwargs"]["config"]["configurable"]["user_id"] == user
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(webapp.on_run_create(anon, run_value({"user_id": "carol"}, metadata={"user_id": "dave"})))
    assert status(e) == 400
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(webapp.on_run_create(anon, run_value({"user_id": webapp.ANONYMOUS})))


def test_threads_are_scoped_to_their_user():
    value = {"metadata": None}
    assert asyncio.run(webapp.on_thread_create(ctx("alice"), value)) == {"user_id": "alice"}
    assert value["metadata"] == {"user_id": "alice"}
    assert asyncio.run(webapp.on_threads(ctx("alice"), {"thread_id": "t"})) == {"user_id": "alice"}
    assert asyncio.run(webapp.on_threads(ctx(webapp.ANONYMOUS), {"thread_id": "t"})) is None
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(webapp.on_threads(ctx("alice"), {"thread_id": "t", "metadata": {"user_id": "bob"}}))
    assert asyncio.run(webapp.on_thread_search(ctx("alice"), {"metadata": {"user_id": "bob"}})) == {"user_id": "alice"}
    assert asyncio.run(webapp.on_thread_search(ctx(webapp.ANONYMOUS), {"metadata": {"user_id": "bob"}})) == {"user_id": "bob"}
    assert asyncio.run(webapp.on_thread_search(ctx(webapp.ANONYMOUS), {})) == {"user_id": "local"}
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(webapp.on_store(ctx("alice"), {"namespace": ("bob", "notes")}))
    assert asyncio.run(webapp.on_store(ctx("alice"), {"namespace": ("alice", "notes")})) is None


def test_assistants_are_read_only_except_for_token_admins(monkeypatch):
    def attempt(identity, action):
        return asyncio.run(webapp.on_assistants(SimpleNamespace(user=SimpleNamespace(identity=identity), action=action), {}))

    monkeypatch.delenv("ATELIER_API_KEYS", raising=False)

    reset_settings()
    monkeypatch.setenv("ATELIER_API_ADMINS", "ops")
    reset_settings()
    for identity in ("bob", "ops", webapp.ANONYMOUS):  # without tokens nobody is an admin (a header is only a claim)
        assert attempt(identity, "read") is None and attempt(identity, "search") is None
        for action in ("create", "update", "delete"):
            with pytest.raises(Auth.exceptions.HTTPException) as e:
                attempt(identity, action)
            assert status(e) == 403
    monkeypatch.setenv("ATELIER_API_KEYS", "ops:tok-o,bob:tok-b")
    reset_settings()
    assert attempt("ops", "update") is None and attempt("ops", "delete") is None
    with pytest.raises(Auth.exceptions.HTTPException):
        attempt("bob", "update")


def test_request_guard_checks_headers_before_anything_parses_them(monkeypatch):
    monkeypatch.delenv("ATELIER_API_MAX_BODY_BYTES", raising=False)
    reset_settings()
    check = webapp.RequestGuard.check
    assert check([(b"x-atelier-user", b"alice"), (b"content-length", b"120")]) is None
    assert check([(b"x-atelier-user", b"alice"), (b"X-Atelier-User", b"bob")])[0] == 400
    assert check([(b"x-atelier-user", b"\xff\xfe")]) == (400, "X-Atelier-User is not valid UTF-8")
    assert check([(b"content-length", b"20000000")])[0] == 413
    assert check([(b"content-length", str(webapp.DEFAULT_MAX_BODY_BYTES).encode())]) is None
    monkeypatch.setenv("ATELIER_API_MAX_BODY_BYTES", "1000")
    reset_settings()
    assert check([(b"content-length", b"1001")])[0] == 413


def test_runs_are_checked_before_they_are_queued():
    def value(content="a red fox", **configurable):
        return run_value(configurable) | {"kwargs": {"config": {"configurable": configurable},
                                                     "input": {"messages": [{"role": "user", "content": content}]}}}

    assert asyncio.run(webapp.on_run_create(ctx("alice"), value(seed=7))) == {"user_id": "alice"}
    for bad, detail in ((value(seed=2**64), "seed must be between"), (value(width=10), "width must be between"),
                        (value("x" * 4001), "the message is 4001 characters long"),
                        (value([{"type": "text", "text": "x" * 4001}]), "the message is 4001 characters long")):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            asyncio.run(webapp.on_run_create(ctx("alice"), bad))
        assert status(e) == 422 and e.value.detail.startswith(detail)
    # A resume (no input) and an assistant's reply in the input are not ideas.
    assert asyncio.run(webapp.on_run_create(ctx("alice"), run_value())) == {"user_id": "alice"}
    reply = value() | {"kwargs": {"config": {"configurable": {}}, "input": {"messages": [{"role": "assistant", "content": "x" * 5000}]}}}
    assert asyncio.run(webapp.on_run_create(ctx("alice"), reply)) == {"user_id": "alice"}


def test_token_users_follow_the_user_id_rule(monkeypatch):
    monkeypatch.setenv("ATELIER_API_KEYS", "alice:tok-a,~root:tok-r,ev\x1bil:tok-e")
    reset_settings()
    assert webapp.api_keys() == {"tok-a": "alice"}
    with pytest.raises(Auth.exceptions.HTTPException):
        webapp.identify({}, "Bearer tok-r")
