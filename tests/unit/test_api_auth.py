"""agent.api's identity rules, in-process: bearer tokens, the X-Atelier-User header, config/metadata claims."""
from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest
from langgraph_sdk import Auth

from agent.api import app as api_app, auth, guard
from models.settings import reset_settings


def ctx(identity: str, action: str = "read"):
    return SimpleNamespace(user=SimpleNamespace(identity=identity), permissions=[], action=action)


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
    assert auth.identify({b"x-atelier-user": b"alice"}, None)["identity"] == "alice"
    anonymous = auth.identify({}, None)
    assert anonymous["identity"] == auth.ANONYMOUS and anonymous["is_authenticated"] is False
    for bad in (b"~root", b"a\x01b", b"x" * 200):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            auth.identify({b"x-atelier-user": bad}, None)
        assert status(e) == 401


def test_tokens_when_configured(monkeypatch):
    monkeypatch.setenv("ATELIER_API_KEYS", "alice:s3cret-a, bob:s3cret-b")
    reset_settings()
    assert auth.identify({}, "Bearer s3cret-b")["identity"] == "bob"
    # A header claim means nothing once tokens are on.
    assert auth.identify({b"x-atelier-user": b"alice"}, "Bearer s3cret-b")["identity"] == "bob"
    for authorization in (None, "Bearer nope", "Basic s3cret-a", "Bearer "):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            auth.identify({b"x-atelier-user": b"alice"}, authorization)
        assert status(e) == 401


def test_run_user_is_forced_to_the_caller():
    value = run_value({"user_id": "alice"})
    assert asyncio.run(auth.on_run_create(ctx("alice"), value)) == {"user_id": "alice"}
    value = run_value()
    asyncio.run(auth.on_run_create(ctx("alice"), value))
    assert value["kwargs"]["config"]["configurable"]["user_id"] == "alice" and value["metadata"]["user_id"] == "alice"
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(auth.on_run_create(ctx("bob"), run_value({"user_id": "alice"})))
    assert status(e) == 403
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(auth.on_run_create(ctx("bob"), run_value(metadata={"user_id": "alice"})))
    assert status(e) == 403


def test_anonymous_runs_take_the_claimed_user():
    anon = ctx(auth.ANONYMOUS)
    for value, user in ((run_value({"user_id": "carol"}), "carol"), (run_value(metadata={"user_id": "dave"}), "dave"),
                        (run_value(config_metadata={"user_id": "erin"}), "erin"), (run_value(), "local")):
        assert asyncio.run(auth.on_run_create(anon, value)) == {"user_id": user}
        assert value["kwargs"]["config"]["configurable"]["user_id"] == user
    with pytest.raises(Auth.exceptions.HTTPException) as e:
        asyncio.run(auth.on_run_create(anon, run_value({"user_id": "carol"}, metadata={"user_id": "dave"})))
    assert status(e) == 400
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(auth.on_run_create(anon, run_value({"user_id": auth.ANONYMOUS})))


def test_threads_are_scoped_to_their_user():
    value = {"metadata": None}
    assert asyncio.run(auth.on_thread_create(ctx("alice"), value)) == {"user_id": "alice"}
    assert value["metadata"] == {"user_id": "alice"}
    assert asyncio.run(auth.on_threads(ctx("alice"), {"thread_id": "t"})) == {"user_id": "alice"}
    assert asyncio.run(auth.on_threads(ctx(auth.ANONYMOUS), {"thread_id": "t"})) is None
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(auth.on_threads(ctx("alice"), {"thread_id": "t", "metadata": {"user_id": "bob"}}))
    assert asyncio.run(auth.on_thread_search(ctx("alice"), {"metadata": {"user_id": "bob"}})) == {"user_id": "alice"}
    assert asyncio.run(auth.on_thread_search(ctx(auth.ANONYMOUS), {"metadata": {"user_id": "bob"}})) == {"user_id": "bob"}
    assert asyncio.run(auth.on_thread_search(ctx(auth.ANONYMOUS), {})) == {"user_id": "local"}
    with pytest.raises(Auth.exceptions.HTTPException):
        asyncio.run(auth.on_store(ctx("alice"), {"namespace": ("bob", "notes")}))
    assert asyncio.run(auth.on_store(ctx("alice"), {"namespace": ("alice", "notes")})) is None


def test_assistants_are_read_only_except_for_token_admins(monkeypatch):
    def attempt(identity, action):
        return asyncio.run(auth.on_assistants(SimpleNamespace(user=SimpleNamespace(identity=identity), action=action), {}))

    monkeypatch.delenv("ATELIER_API_KEYS", raising=False)

    reset_settings()
    monkeypatch.setenv("ATELIER_API_ADMINS", "ops")
    reset_settings()
    for identity in ("bob", "ops", auth.ANONYMOUS):  # without tokens nobody is an admin (a header is only a claim)
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
    check = guard.RequestGuard.check
    assert check([(b"x-atelier-user", b"alice"), (b"content-length", b"120")]) is None
    assert check([(b"x-atelier-user", b"alice"), (b"X-Atelier-User", b"bob")])[0] == 400
    assert check([(b"x-atelier-user", b"\xff\xfe")]) == (400, "X-Atelier-User is not valid UTF-8")
    assert check([(b"content-length", b"20000000")])[0] == 413
    assert check([(b"content-length", str(auth.DEFAULT_MAX_BODY_BYTES).encode())]) is None
    monkeypatch.setenv("ATELIER_API_MAX_BODY_BYTES", "1000")
    reset_settings()
    assert check([(b"content-length", b"1001")])[0] == 413


def test_runs_are_checked_before_they_are_queued():
    def value(content="a red fox", **configurable):
        return run_value(configurable) | {"kwargs": {"config": {"configurable": configurable},
                                                     "input": {"messages": [{"role": "user", "content": content}]}}}

    assert asyncio.run(auth.on_run_create(ctx("alice"), value(seed=7))) == {"user_id": "alice"}
    for bad, detail in ((value(seed=2**64), "seed must be between"), (value(width=10), "width must be between"),
                        (value("x" * 4001), "the message is 4001 characters long"),
                        (value([{"type": "text", "text": "x" * 4001}]), "the message is 4001 characters long")):
        with pytest.raises(Auth.exceptions.HTTPException) as e:
            asyncio.run(auth.on_run_create(ctx("alice"), bad))
        assert status(e) == 422 and e.value.detail.startswith(detail)
    # A resume (no input) and an assistant's reply in the input are not ideas.
    assert asyncio.run(auth.on_run_create(ctx("alice"), run_value())) == {"user_id": "alice"}
    reply = value() | {"kwargs": {"config": {"configurable": {}}, "input": {"messages": [{"role": "assistant", "content": "x" * 5000}]}}}
    assert asyncio.run(auth.on_run_create(ctx("alice"), reply)) == {"user_id": "alice"}


def test_token_users_follow_the_user_id_rule(monkeypatch):
    """A token for a name that breaks the user-id rule is no longer skipped with a warning: the server refuses to
    start (issue 21 item 5), and every request fails closed meanwhile."""
    from agent.settings import SettingsError

    monkeypatch.setenv("ATELIER_API_KEYS", "alice:tok-a,~root:tok-r,ev\x1bil:tok-e")
    reset_settings()
    with pytest.raises(SettingsError, match="ATELIER_API_KEYS entry 2: user id may not start with '~'"):
        auth.api_keys()


# -- issue 21 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, complaint", [
    ("alice=tokA,bob=tokB", "entry 1 is not 'user:token'"),  # the reproduction: used to mean "no tokens"
    ("alice:tokA;bob:tokB", "entry 1: a token may not contain"),
    ("alice:tokA,bob", "entry 2 is not 'user:token'"),
    ("alice:tokA,,bob:tokB", "has an empty entry (number 2)"),
    (":tokA", "entry 1 is not 'user:token'"),
    ("alice:", "entry 1 is not 'user:token'"),
    ("alice:same,bob:same", "entry 2 repeats the token"),
    ("alice:tok a", "entry 1: a token may not contain spaces"),
])
def test_misformatted_api_keys_are_refused_at_start(monkeypatch, value, complaint):
    """Item 5: never silently no keys. One line naming the variable, and never the token itself."""
    from agent.settings import SettingsError, checked_settings

    monkeypatch.setenv("ATELIER_API_KEYS", value)
    reset_settings()
    with pytest.raises(SettingsError) as refused:
        checked_settings()
    message = str(refused.value)
    assert message.startswith("ATELIER_API_KEYS ") and complaint in message and "\n" not in message
    assert "tokA" not in message and "tokB" not in message and "same" not in message.replace("repeats the token", "")
    with pytest.raises(SettingsError):  # nor does a request get through as "no tokens configured"
        auth.identify({}, None)


@pytest.mark.parametrize("keys, admins, complaint", [
    ("ops:tok-o", "ops:tok-o", "entry 1 is not a user name"),
    ("ops:tok-o", "ops;alice", "entry 1 is not a user name"),
    ("ops:tok-o", "ops,,alice", "entry 2 is not a user name"),
    ("ops:tok-o", "ops alice", "entry 1 is not a user name"),
    ("ops:tok-o", "~root", "entry 1: user id may not start with '~'"),
    ("ops:tok-o", "opz", "names users with no token in ATELIER_API_KEYS: opz"),
])
def test_misformatted_api_admins_are_refused_at_start(monkeypatch, keys, admins, complaint):
    from agent.settings import SettingsError, checked_settings

    monkeypatch.setenv("ATELIER_API_KEYS", keys)
    monkeypatch.setenv("ATELIER_API_ADMINS", admins)
    reset_settings()
    with pytest.raises(SettingsError) as refused:
        checked_settings()
    assert str(refused.value).startswith("ATELIER_API_ADMINS ") and complaint in str(refused.value)


def test_well_formed_keys_and_admins_are_read(monkeypatch):
    from agent.settings import checked_settings

    monkeypatch.setenv("ATELIER_API_KEYS", " alice:tok-a , bob:tok-b,alice:tok-a2 ")
    monkeypatch.setenv("ATELIER_API_ADMINS", "alice")
    reset_settings()
    settings = checked_settings()
    assert settings.api_key_map == {"tok-a": "alice", "tok-b": "bob", "tok-a2": "alice"}
    assert auth.admins() == {"alice"}


def test_bulk_cancel_needs_an_identity():
    """Item 10: POST /runs/cancel {"status": "pending"} names no thread; with no identity it reached every user's
    runs. Now refused; with an identity it is scoped to the caller's threads; one named thread stays allowed."""
    bulk = {"thread_id": None, "action": "interrupt", "metadata": {"run_ids": None, "status": "pending"}}
    with pytest.raises(Auth.exceptions.HTTPException) as refused:
        asyncio.run(auth.on_threads(ctx(auth.ANONYMOUS, "update"), dict(bulk)))
    assert status(refused) == 403 and "needs an identity" in refused.value.detail
    assert asyncio.run(auth.on_threads(ctx("alice", "update"), dict(bulk))) == {"user_id": "alice"}
    named = {"thread_id": "9f0b7f0e-0000-0000-0000-000000000000", "action": "interrupt", "metadata": {"run_ids": ["r"], "status": None}}
    assert asyncio.run(auth.on_threads(ctx(auth.ANONYMOUS, "update"), named)) is None


def test_the_route_allow_list_denies_by_default(monkeypatch):
    """Item 1, in-process: the guard's verdicts (the live server is walked route by route in test_api_security)."""
    monkeypatch.delenv("ATELIER_API_KEYS", raising=False)
    reset_settings()
    admit = guard.RequestGuard.admit
    for method, path in (("GET", "/internal/debug/thread/abc"), ("POST", "/internal/truncate"), ("POST", "/deploy"),
                         ("GET", "/metrics"), ("GET", "/info"), ("GET", "/"), ("POST", "/threads/prune"),
                         ("PUT", "/store/items"), ("POST", "/runs/crons"), ("GET", "/ui/x/y.js"), ("POST", "/a2a/atelier"),
                         ("GET", "/some/route/a/future/langgraph-api/adds"), ("POST", "/threads/t/copy"),
                         ("GET", "/ok/"), ("GET", "//ok"), ("POST", "/ok"), ("GET", "/threads/a/b/state")):
        assert admit("http", method, path, []) == (404, "Not Found", {}), (method, path)
    assert admit("websocket", "GET", "/threads/t/stream/events", []) is not None
    for method, path in (("GET", "/ok"), ("GET", "/threads/t/state"), ("POST", "/threads/t/runs/stream"), ("HEAD", "/assets/ab"),
                         ("POST", "/runs/cancel"), ("GET", "/creations"), ("OPTIONS", "/threads")):
        assert admit("http", method, path, []) is None, (method, path)
    monkeypatch.setenv("ATELIER_API_KEYS", "alice:tok-alice")
    reset_settings()
    assert admit("http", "GET", "/openapi.json", [])[0] == 401  # the runtime's auth does not cover its meta routes
    assert admit("http", "GET", "/openapi.json", [(b"authorization", b"Bearer nope")])[0] == 401
    assert admit("http", "GET", "/openapi.json", [(b"authorization", b"Bearer tok-alice")]) is None
    assert admit("http", "GET", "/ok", []) is None
    assert admit("http", "POST", "/internal/truncate", [(b"authorization", b"Bearer tok-alice")])[0] == 404


def test_server_paths_are_cut_from_answers(monkeypatch, tmp_path):
    """Item 12: '<data dir>/' never leaves in a JSON or text answer, even cut across two streamed chunks; files and
    their lengths are untouched."""
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    reset_settings()
    prefix = f"{(tmp_path / 'data').resolve()}/".encode()

    def collect(messages):
        sent = []

        async def send(message):
            sent.append(message)

        wrapped = guard.relative_paths(send)

        async def go():
            for message in messages:
                await wrapped(message)
        asyncio.run(go())
        return sent

    body = b'{"image": {"path": "' + prefix + b'assets/ab/cd.png", "sha256": "ab"}}'
    sent = collect([{"type": "http.response.start", "status": 200,
                     "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
                    {"type": "http.response.body", "body": body[:30], "more_body": True},
                    {"type": "http.response.body", "body": body[30:], "more_body": False}])
    out = b"".join(m.get("body", b"") for m in sent)
    assert out == b'{"image": {"path": "assets/ab/cd.png", "sha256": "ab"}}'
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(out)).encode()

    event = b"event: values\ndata: {\"text\": \"Image by sketch: " + prefix + b"assets/ab/cd.png\"}\n\n"
    cut = event.index(prefix) + 7  # the prefix split across two chunks
    sent = collect([{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]},
                    {"type": "http.response.body", "body": event[:cut], "more_body": True},
                    {"type": "http.response.body", "body": event[cut:] + b"event: end\n\n", "more_body": True},
                    {"type": "http.response.body", "body": b"", "more_body": False}])
    streamed = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert b"".join(streamed) == event.replace(prefix, b"") + b"event: end\n\n"
    assert streamed[0].endswith(b"sketch: ")  # only the possible start of a prefix was held back

    glb = b"glTF" + prefix + b"binary"
    sent = collect([{"type": "http.response.start", "status": 200,
                     "headers": [(b"content-type", b"model/gltf-binary"), (b"content-length", str(len(glb)).encode())]},
                    {"type": "http.response.body", "body": glb, "more_body": False}])
    assert sent[1]["body"] == glb


def test_fair_pick_serves_users_round_robin_and_threads_in_order():
    """Item 2, in-process: one user's pile on one busy thread cannot hide another user's run."""
    from datetime import UTC, datetime, timedelta

    from agent import inmem_queue

    inmem_queue._last_served.clear()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def run(i, user, thread, status="pending"):
        return {"run_id": f"r{i}", "thread_id": thread, "status": status, "created_at": t0 + timedelta(seconds=i),
                "metadata": {"user_id": user}}

    runs = [run(0, "alice", "tA", "running")] + [run(i, "alice", "tA") for i in range(1, 41)] + [run(50, "bob", "tB")]
    now = t0 + timedelta(hours=1)
    assert [r["run_id"] for r in inmem_queue.fair_pick(runs, 1, now)] == ["r50"]  # the runtime's own next() gave nothing
    # With free threads, a user with many runs does not get all the workers: round-robin.
    runs = [run(i, "alice", f"a{i}") for i in range(10)] + [run(20 + i, "bob", f"b{i}") for i in range(3)]
    inmem_queue._last_served["alice"] = 5  # alice was served last
    picked = [r["metadata"]["user_id"] for r in inmem_queue.fair_pick(runs, 6, now)]
    assert picked == ["bob", "alice", "bob", "alice", "bob", "alice"]
    # A thread's runs start in the order they were queued, one at a time.
    runs = [run(3, "carol", "tC"), run(1, "carol", "tC"), run(2, "carol", "tC")]
    assert [r["run_id"] for r in inmem_queue.fair_pick(runs, 3, now)] == ["r1"]
    # Runs created after `now` (after_seconds) wait.
    assert inmem_queue.fair_pick([run(5, "dave", "tD")], 1, t0) == []
    inmem_queue._last_served.clear()


def test_the_server_refuses_to_start_unless_the_guard_is_outermost():
    """The allow-list only holds if RequestGuard sees every request first (a langgraph.json middleware_order or
    mount_prefix change would put routes outside it): lifespan() checks the app it is started with."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    guard.check_guard_is_outermost(Starlette(middleware=[Middleware(guard.RequestGuard)], routes=list(api_app.app.routes)))
    class Outer:  # any middleware in front of the guard
        def __init__(self, app):
            self.app = app

    for app in (Starlette(), Starlette(middleware=[Middleware(Outer), Middleware(guard.RequestGuard)])):
        with pytest.raises(RuntimeError, match="outermost middleware"):
            guard.check_guard_is_outermost(app)


def test_every_per_run_setting_is_described_and_checked():
    """Item 9, in-process: the one place (Configuration) the API's run check, the CLI and the graph share."""
    from agent.configuration import Configuration

    described = Configuration.described()
    assert set(described) >= {"enhance", "auto_3d", "review_prompt", "guidance", "negative_prompt", "width", "seed", "steps",
                              "image_backends", "model_backends", "decision_policy", "user_id", "thread_id", "height"}
    assert all(len(text) > 10 for text in described.values()), described

    def build(**configurable):
        return Configuration.from_runnable_config({"configurable": configurable})

    cfg = build(enhance="no", auto_3d="FALSE", review_prompt="on", guidance=7, negative_prompt=" fog\x1b[2J ")
    assert (cfg.enhance, cfg.auto_3d, cfg.review_prompt, cfg.guidance, cfg.negative_prompt) == (False, False, True, 7.0, "fog")
    for bad, message in (({"enhance": "nope"}, "enhance must be true or false"), ({"auto_3d": 2}, "auto_3d must be true or false"),
                         ({"review_prompt": []}, "review_prompt must be true or false"),
                         ({"guidance": float("nan")}, "guidance must be a finite number"), ({"guidance": float("inf")}, "guidance must be a finite"),
                         ({"guidance": 1e308}, "guidance must be between 0 and 50"), ({"guidance": -1}, "guidance must be between"),
                         ({"guidance": True}, "guidance must be a number"), ({"guidance": "7.5"}, "guidance must be a number"),
                         ({"negative_prompt": "n" * 200_000}, "negative_prompt is 200000 characters long; the limit is 1000"),
                         ({"negative_prompt": 5}, "negative_prompt must be text"),
                         ({"image_backends": ["sketch"] * 17}, "image_backends names 17 backends"),
                         ({"model_backends": "relief,../../etc"}, "model_backends has a name that is not a backend name"),
                         ({"decision_policy": ["router"]}, "decision_policy must be one of")):
        with pytest.raises(ValueError, match=re.escape(message)):
            build(**bad)
