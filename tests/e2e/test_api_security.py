"""Issue 21 against real `atelier serve` processes on 127.0.0.1: every route of the server's own route table
(enumerated from the app the server builds, not a hand list) walked with no credentials and with another user's,
with tokens (ATELIER_API_KEYS) and in header mode; the issue's reproductions (/internal/*, /deploy); one user's
queue no longer delaying another's, and its 429 caps; a misformatted ATELIER_API_KEYS refused at start; no server
paths in answers.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest

from services import ROOT, atelier_env, free_port, start_api

pytestmark = pytest.mark.timeout(420)

MARK = "a zebra quokka lantern"  # alice's idea: it must never reach bob or an anonymous caller
KEYS = "alice:tok-alice,bob:tok-bob"
RUN = {"enhance": False, "auto_3d": False}


def route_table(data_dir: Path, **env: str) -> list[dict]:
    """The route table of the app `atelier serve` builds, with the allow-list's verdict (python -m agent.api.server
    --routes: langgraph_api.server imported in serve()'s environment, nothing listening)."""
    out = subprocess.run([sys.executable, "-m", "agent.api.server", "--routes"], env=atelier_env(data_dir, **env),
                         capture_output=True, text=True, timeout=120, cwd=data_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads(out.stdout)
    assert len(table) > 50, "the whole table, not a hand list"
    return table


class Alice:
    """Alice's thread, run, creation and asset on a server: what the walk must never hand to anyone else."""

    def __init__(self, url: str, headers: dict):
        client = httpx.Client(base_url=url, headers=headers, timeout=180)
        self.thread_id = client.post("/threads", json={}).json()["thread_id"]
        run = client.post(f"/threads/{self.thread_id}/runs", json={
            "assistant_id": "atelier", "input": {"messages": [{"role": "user", "content": MARK}]}, "config": {"configurable": RUN}})
        assert run.status_code == 200, run.text
        self.run_id = run.json()["run_id"]
        client.get(f"/threads/{self.thread_id}/runs/{self.run_id}/join")
        state = client.get(f"/threads/{self.thread_id}/state").json()
        self.state = state
        self.checkpoint_id = state["checkpoint"]["checkpoint_id"]
        self.creation_id = state["values"]["creation_id"]
        self.sha256 = state["values"]["image"]["sha256"]
        self.assistant_id = client.post("/assistants/search", json={"graph_id": "atelier"}).json()[0]["assistant_id"]
        self.client = client

    def secrets(self) -> list[str]:
        return [self.thread_id, self.creation_id, self.sha256, MARK, self.run_id]

    def fill(self, path: str, own_ids: bool = True) -> str:
        values = {"thread_id": self.thread_id, "run_id": self.run_id, "checkpoint_id": self.checkpoint_id,
                  "creation_id": self.creation_id, "sha256": self.sha256, "assistant_id": self.assistant_id}
        if not own_ids:  # someone else's ids are not hers: an unknown thread / run
            values.update(thread_id=str(uuid.uuid4()), run_id=str(uuid.uuid4()))
        return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)

    def intact(self) -> None:
        """Her thread, its state and her creation are all still there, unchanged."""
        assert self.client.get(f"/threads/{self.thread_id}").status_code == 200
        state = self.client.get(f"/threads/{self.thread_id}/state").json()
        assert state["checkpoint"]["checkpoint_id"] == self.checkpoint_id
        assert self.thread_id in [t["thread_id"] for t in self.client.post("/threads/search", json={"limit": 100}).json()]
        assert self.client.get(f"/creations/{self.creation_id}").status_code == 200
        assert self.client.get(f"/assets/{self.sha256}").status_code == 200


def walk(url: str, table: list[dict], alice: Alice, headers: dict, data_dir: Path, *, own_ids: bool = True) -> dict:
    """Every route in the table, as this caller: a route off the allow-list is refused (401/403/404); an allowed
    one never fails with a server error and never hands back alice's data or a server path."""
    seen = {"refused": 0, "allowed": 0}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(60, read=5)) as client:
        for route in table:
            method, path = route["method"], alice.fill(route["path"], own_ids)
            if method == "WEBSOCKET":
                status, text = fetch(client, "GET", path, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                                  "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            else:
                status, text = fetch(client, "GET" if method == "*" else method, path,
                                     json={} if method in ("POST", "PUT", "PATCH") else None)
            where = f"{method} {path} -> {status} {text[:200]}"
            assert status < 500, where
            if route["access"] == "denied":
                assert status in (401, 403, 404), where
                seen["refused"] += 1
                continue
            seen["allowed"] += 1
            if 200 <= status < 300:
                assert not any(s in text for s in alice.secrets()), where
                assert str(data_dir) not in text, where
    return seen


def fetch(client: httpx.Client, method: str, path: str, seconds: float = 3, **kwargs) -> tuple[int, str]:
    """Status and body; a stream (SSE routes keep a connection open with heartbeats) is read for a few seconds."""
    deadline, body = time.monotonic() + seconds, b""
    with client.stream(method, path, **kwargs) as response:
        try:
            for chunk in response.iter_raw():
                body += chunk
                if time.monotonic() > deadline or len(body) > 2_000_000:
                    break
        except httpx.ReadTimeout:  # an open stream with nothing to say
            pass
        return response.status_code, body.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-keys")
    service = start_api(data_dir, ATELIER_LLM_THREADS="1", ATELIER_API_KEYS=KEYS)
    try:
        yield service, data_dir
    finally:
        service.stop()


@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-header")
    service = start_api(data_dir, ATELIER_LLM_THREADS="1")
    try:
        yield service, data_dir
    finally:
        service.stop()


def test_the_issues_reproductions_are_refused(keyed):
    """Item 1 as reported: with keys for alice and bob, no credentials read alice's thread, truncated every user's
    threads and started `langgraph deploy`. All three are now 404, nothing changes, no process starts."""
    service, data_dir = keyed
    alice = Alice(service.url, {"Authorization": "Bearer tok-alice"})
    for headers in ({}, {"Authorization": "Bearer tok-bob"}, {"Authorization": "Bearer tok-alice"}):
        debug = httpx.get(f"{service.url}/internal/debug/thread/{alice.thread_id}", headers=headers)
        assert debug.status_code == 404 and MARK not in debug.text and str(data_dir) not in debug.text
        assert httpx.post(f"{service.url}/internal/truncate", json={}, headers=headers).status_code == 404
        assert httpx.post(f"{service.url}/deploy", json={"name": "x"}, headers=headers).status_code == 404
        for path in ("/metrics", "/info", "/deploy"):
            assert httpx.get(f"{service.url}{path}", headers=headers).status_code == 404
    alice.intact()
    children = psutil.Process(service.proc.pid).children(recursive=True)
    assert not any("deploy" in " ".join(p.cmdline()) for p in children)
    # /docs and /openapi.json need a token; /ok is open and says only that the server is up.
    for path in ("/docs", "/openapi.json", "/atelier/health"):
        assert httpx.get(f"{service.url}{path}").status_code == 401
        assert httpx.get(f"{service.url}{path}", headers={"Authorization": "Bearer tok-bob"}).status_code == 200
    ok = httpx.get(f"{service.url}/ok", params={"check_db": "1"})
    assert ok.status_code == 200 and ok.json()["ok"] is True and str(data_dir) not in ok.text
    health = httpx.get(f"{service.url}/atelier/health", headers={"Authorization": "Bearer tok-bob"}).json()
    assert "data_dir" not in health and str(data_dir) not in json.dumps(health)  # item 12


def test_every_route_with_tokens(keyed):
    service, data_dir = keyed
    table = route_table(data_dir, ATELIER_API_KEYS=KEYS)
    alice = Alice(service.url, {"Authorization": "Bearer tok-alice"})
    nobody = walk(service.url, table, alice, {}, data_dir)
    bob = walk(service.url, table, alice, {"Authorization": "Bearer tok-bob"}, data_dir)
    print(f"\nroutes: {len(table)}; no credentials {nobody}; bob {bob}")
    assert nobody["refused"] >= 15 and bob["allowed"] >= 40
    # With no token, every route but /ok is refused outright (the guard itself, before any handler).
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for route in table:
            if route["access"] == "caller" and route["method"] in ("GET", "POST", "DELETE", "PATCH"):
                response = client.request(route["method"], alice.fill(route["path"]), json={} if route["method"] in ("POST", "PATCH") else None)
                assert response.status_code == 401, (route, response.text)
    alice.intact()


def test_every_route_in_header_mode(headed):
    """Header mode trusts the network to set X-Atelier-User (README: Security). Another user's header is scoped
    like a token; with no header (open local mode) a thread is reachable only by its id, so the anonymous walk
    uses ids that are not alice's and checks that nothing lists, counts, cancels or changes her things."""
    service, data_dir = headed
    table = route_table(data_dir)
    alice = Alice(service.url, {"X-Atelier-User": "alice"})
    bob = walk(service.url, table, alice, {"X-Atelier-User": "bob"}, data_dir)
    nobody = walk(service.url, table, alice, {}, data_dir, own_ids=False)
    print(f"\nroutes: {len(table)}; bob {bob}; no header {nobody}")
    alice.intact()


def test_bulk_cancel_with_no_identity_is_refused(headed):
    """Item 10: POST /runs/cancel {"status": "pending"} with no identity interrupted every user's runs."""
    service, _ = headed
    refused = httpx.post(f"{service.url}/runs/cancel", json={"status": "pending"})
    assert refused.status_code == 403 and "needs an identity" in refused.text
    assert httpx.post(f"{service.url}/runs/cancel", json={"status": "all"}).status_code == 403
    # With an identity it reaches only the caller's runs: bob has none pending, so nothing is found.
    assert httpx.post(f"{service.url}/runs/cancel", json={"status": "pending"}, headers={"X-Atelier-User": "bob"}).status_code == 404


def test_thread_state_carries_no_server_paths(headed):
    """Item 12: what the server answers names assets relative to the data dir (and by sha256, for GET /assets)."""
    service, data_dir = headed
    alice = Alice(service.url, {"X-Atelier-User": "alice"})
    image = alice.state["values"]["image"]
    assert not Path(image["path"]).is_absolute() and image["path"] == image["rel_path"]
    for path in (f"/threads/{alice.thread_id}/state", f"/threads/{alice.thread_id}/history", f"/threads/{alice.thread_id}"):
        assert str(data_dir) not in alice.client.get(path).text
    streamed = alice.client.post(f"/threads/{alice.thread_id}/runs/stream", json={
        "assistant_id": "atelier", "input": {"messages": [{"role": "user", "content": "make it 3D"}]},
        "config": {"configurable": RUN}, "stream_mode": ["updates", "values", "custom", "messages-tuple"]})
    assert streamed.status_code == 200 and "image_to_3d" in streamed.text and str(data_dir) not in streamed.text
    assert alice.client.get(f"/assets/{image['sha256']}").status_code == 200


def test_per_run_settings_are_type_checked(headed):
    """Item 9: {"enhance": "no"} used to count as true; NaN / 1e308 guidance and a 200 KB negative prompt ran."""
    service, _ = headed
    client = httpx.Client(base_url=service.url, headers={"X-Atelier-User": "erin"}, timeout=60)
    thread = client.post("/threads", json={}).json()["thread_id"]

    def run(**configurable):
        return client.post(f"/threads/{thread}/runs", json={"assistant_id": "atelier", "config": {"configurable": configurable},
                                                            "input": {"messages": [{"role": "user", "content": "a red fox"}]}})
    for configurable, detail in (({"enhance": "maybe"}, "enhance must be true or false"),
                                 ({"auto_3d": [1]}, "auto_3d must be true or false"),
                                 ({"guidance": 1e308}, "guidance must be between 0 and 50"),
                                 ({"guidance": "7"}, "guidance must be a number"),
                                 ({"negative_prompt": "n" * 200_000}, "negative_prompt is 200000 characters long; the limit is 1000"),
                                 ({"image_backends": 7}, "image_backends must be a list"),
                                 ({"decision_policy": "coin-flip"}, "decision_policy must be one of")):
        refused = run(**configurable)
        assert refused.status_code in (413, 422), (configurable, refused.text)
        if refused.status_code == 422:
            assert refused.json()["detail"].startswith(detail), refused.text
    nan = client.post(f"/threads/{thread}/runs", content=b'{"assistant_id": "atelier", "config": {"configurable": {"guidance": NaN}},'
                      b' "input": {"messages": [{"role": "user", "content": "a red fox"}]}}', headers={"content-type": "application/json"})
    assert nan.status_code in (400, 422), nan.text
    assert client.get(f"/threads/{thread}/runs").json() == []
    # An unambiguous spelling is read as what it says: "no" / "false" turn enhance and auto-3D off.
    accepted = run(enhance="no", auto_3d="false")
    assert accepted.status_code == 200, accepted.text
    client.get(f"/threads/{thread}/runs/{accepted.json()['run_id']}/join", timeout=180)
    steps = [s["tool"] for s in client.get(f"/threads/{thread}/state").json()["values"]["steps"]]
    assert steps == ["text_to_image"], steps


# -- item 2: one user's queue -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def queued(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-queue")
    service = start_api(data_dir, ATELIER_LLM_THREADS="1", ATELIER_API_MAX_PENDING_RUNS_PER_THREAD="40",
                        ATELIER_API_MAX_PENDING_RUNS_PER_USER="45")
    try:
        yield service
    finally:
        service.stop()


def enqueue(client: httpx.Client, thread: str, text: str) -> httpx.Response:
    return client.post(f"/threads/{thread}/runs", json={"assistant_id": "atelier", "multitask_strategy": "enqueue",
                                                         "input": {"messages": [{"role": "user", "content": text}]},
                                                         "config": {"configurable": RUN}})


def test_another_users_run_is_not_delayed_by_a_queue(queued):
    """40 runs queued by alice on one thread made bob's run wait for all of them (15 s); now it starts at once and
    is done while most of alice's are still waiting."""
    url = queued.url
    alice = httpx.Client(base_url=url, headers={"X-Atelier-User": "alice"}, timeout=60)
    bob = httpx.Client(base_url=url, headers={"X-Atelier-User": "bob"}, timeout=180)
    thread = alice.post("/threads", json={}).json()["thread_id"]
    for i in range(40):
        assert enqueue(alice, thread, f"a tin robot number {i}").status_code == 200
    bobs = bob.post("/threads", json={}).json()["thread_id"]
    started = time.monotonic()
    run = bob.post(f"/threads/{bobs}/runs/wait", json={"assistant_id": "atelier", "config": {"configurable": RUN},
                                                      "input": {"messages": [{"role": "user", "content": "a brass owl"}]}})
    took = time.monotonic() - started
    assert run.status_code == 200, run.text
    waiting = [r for r in alice.get(f"/threads/{thread}/runs", params={"limit": 100}).json() if r["status"] == "pending"]
    bob_run = bob.get(f"/threads/{bobs}/runs").json()[0]
    first = min(datetime.fromisoformat(h["created_at"]) for h in bob.get(f"/threads/{bobs}/history", params={"limit": 50}).json())
    start_latency = (first - datetime.fromisoformat(bob_run["created_at"])).total_seconds()
    print(f"\nbob's run: started {start_latency:.3f} s after it was created, done in {took:.2f} s; alice still has {len(waiting)} waiting")
    assert start_latency < 2.0
    assert len(waiting) >= 20, "bob's run finished while alice's queue was still long"
    alice.post("/runs/cancel", json={"status": "pending"})


async def enqueue_at_once(url: str, user: str, thread: str, n: int, text: str) -> list[httpx.Response]:
    """n runs posted together, so they are all queued before the thread's first one is done."""
    import asyncio

    async with httpx.AsyncClient(base_url=url, headers={"X-Atelier-User": user}, timeout=120) as client:
        return await asyncio.gather(*(client.post(f"/threads/{thread}/runs", json={
            "assistant_id": "atelier", "multitask_strategy": "enqueue", "config": {"configurable": RUN},
            "input": {"messages": [{"role": "user", "content": f"{text} {i}"}]}}) for i in range(n)))


def test_pending_runs_are_capped_per_thread_and_per_user(queued):
    import asyncio

    url = queued.url
    carol = httpx.Client(base_url=url, headers={"X-Atelier-User": "carol"}, timeout=60)
    thread = carol.post("/threads", json={}).json()["thread_id"]
    answers = asyncio.run(enqueue_at_once(url, "carol", thread, 80, "a paper crane"))
    assert all(a.status_code in (200, 429) for a in answers), [a.text for a in answers if a.status_code not in (200, 429)][:3]
    refused = [a for a in answers if a.status_code == 429]
    assert refused and sum(a.status_code == 200 for a in answers) >= 40
    assert "ATELIER_API_MAX_PENDING_RUNS_PER_THREAD" in refused[0].json()["detail"] and refused[0].headers["retry-after"]
    # A second thread: carol's own total (45) stops her, whichever thread.
    other = carol.post("/threads", json={}).json()["thread_id"]
    answers = asyncio.run(enqueue_at_once(url, "carol", other, 20, "a paper boat"))
    per_user = [a for a in answers if a.status_code == 429]
    assert per_user and "ATELIER_API_MAX_PENDING_RUNS_PER_USER" in per_user[-1].json()["detail"], [a.text for a in answers]
    # Another user is not affected by carol's caps.
    dave = httpx.Client(base_url=url, headers={"X-Atelier-User": "dave"}, timeout=60)
    daves = dave.post("/threads", json={}).json()["thread_id"]
    assert enqueue(dave, daves, "a glass fish").status_code == 200
    carol.post("/runs/cancel", json={"status": "pending"})


# -- item 5 ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variable, value", [("ATELIER_API_KEYS", "alice=tokA,bob=tokB"), ("ATELIER_API_ADMINS", "ops:tokA")])
def test_serve_refuses_a_misformatted_setting(tmp_path, variable, value):
    """`atelier serve` with ATELIER_API_KEYS="alice=tokA,bob=tokB" used to start with no tokens at all (anyone read
    /creations?user_id=alice). Now it stops at once, one line naming the variable, the token not repeated."""
    env = atelier_env(tmp_path, **{variable: value, "ATELIER_API_KEYS": "ops:tok-o" if variable != "ATELIER_API_KEYS" else value})
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "agent.cli", "serve", "--port", str(port)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"atelier: error: SettingsError: {variable} "), out.stderr
    assert "tokA" not in out.stderr and "tokB" not in out.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/ok")


def test_every_allow_list_row_is_a_real_route(tmp_path):
    """Every row of the allow-list names a route the server really has (a stale row would be a door for a route a
    later langgraph-api adds under that path)."""
    from agent.api.guard import ALLOWED_ROUTES

    table = {(r["method"], r["path"]) for r in route_table(tmp_path)}
    stale = [(m, p) for m, p, _ in ALLOWED_ROUTES if (m, p) not in table]
    assert stale == [], stale
    assert (ROOT / "langgraph.json").is_file()
