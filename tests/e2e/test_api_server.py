"""`atelier serve` (the LangGraph API server) driven through the official langgraph-sdk client, as a user would:
create a thread, stream a creation, fetch its assets, pause for review and resume, read the history, restart the
server and carry on with the same thread. Real processes on 127.0.0.1; each server is stopped by its fixture.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import NotFoundError

from services import ROOT, start_api

pytestmark = pytest.mark.timeout(420)

OWL = "a brass owl automaton"


class Server:
    """The running server; the restart test swaps the process, the data dir stays."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.service = start_api(data_dir, ATELIER_LLM_THREADS="1")

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, user: str | None = None):
        return get_sync_client(url=self.url, api_key=None, headers={"X-Atelier-User": user} if user else None, timeout=300)

    def restart(self) -> None:
        self.service.stop()
        self.service = start_api(self.data_dir, ATELIER_LLM_THREADS="1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("api-data")
    srv = Server(data_dir)
    try:
        yield srv
    finally:
        srv.service.stop()


def stream(client, thread_id: str, text: str | None = None, command: dict | None = None, **configurable):
    """Run one request, collecting (mode, data) as they stream."""
    parts = []
    kwargs = {"command": command} if command is not None else {"input": {"messages": [{"role": "user", "content": text}]}}
    for part in client.runs.stream(thread_id, "atelier", config={"configurable": configurable}, stream_mode=["updates", "custom"], **kwargs):
        assert part.event != "error", part.data
        parts.append((part.event, part.data))
    return parts


def custom(parts, event: str) -> list[dict]:
    return [d for mode, d in parts if mode == "custom" and d.get("event") == event]


@pytest.fixture(scope="module")
def owl(server):
    """Alice makes the brass owl (without enhance: the LLM is not what this file tests)."""
    alice = server.client("alice")
    thread = alice.threads.create(metadata={"topic": "automata"})
    parts = stream(alice, thread["thread_id"], OWL, enhance=False)
    state = alice.threads.get_state(thread["thread_id"])
    return {"thread": thread, "parts": parts, "state": state}


def test_stream_a_creation_and_download_its_model(server, owl):
    thread, parts, values = owl["thread"], owl["parts"], owl["state"]["values"]
    assert thread["metadata"]["user_id"] == "alice"  # stamped by the server from the caller's identity
    assert [e["tool"] for e in custom(parts, "step_start")] == ["text_to_image", "image_to_3d"]
    ends = custom(parts, "step_end")
    assert [e["tool"] for e in ends] == ["text_to_image", "image_to_3d"]
    assert all(e["seconds"] >= 0 and e["backend"] for e in ends)
    assert custom(parts, "progress"), "progress events are streamed"
    assert any(mode == "updates" and "tools" in d for mode, d in parts)
    assert values["creation_id"] == ends[0]["creation_id"] == ends[1]["creation_id"]
    assert "saved" in values["messages"][-1]["content"]

    alice = httpx.Client(base_url=server.url, headers={"X-Atelier-User": "alice"}, timeout=30)
    model = alice.get(f"/assets/{values['model']['sha256']}", params={"download": 1})
    assert model.status_code == 200 and model.content[:4] == b"glTF"
    assert model.headers["content-type"] == "model/gltf-binary"
    assert hashlib.sha256(model.content).hexdigest() == values["model"]["sha256"]
    image = alice.get(f"/assets/{values['image']['sha256']}")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    creation = alice.get(f"/creations/{values['creation_id']}").json()
    assert creation["original_prompt"] == OWL and creation["thread_id"] == thread["thread_id"]
    assert {a["kind"]: a["url"] for a in creation["assets"]} == {"image": f"/assets/{values['image']['sha256']}",
                                                                 "model": f"/assets/{values['model']['sha256']}"}
    assert all("path" not in a for a in creation["assets"])  # no server paths in the public record
    assert [c["id"] for c in alice.get("/creations").json()["creations"]] == [values["creation_id"]]
    assert alice.get("/assets/" + "0" * 64).status_code == 404
    assert alice.get("/assets/not-a-hash").status_code == 400


def test_users_never_see_each_others_creations(server, owl):
    values = owl["state"]["values"]
    bob = server.client("bob")
    with pytest.raises(NotFoundError):
        bob.threads.get_state(owl["thread"]["thread_id"])
    assert owl["thread"]["thread_id"] not in [t["thread_id"] for t in bob.threads.search(limit=100)]
    raw = httpx.Client(base_url=server.url, headers={"X-Atelier-User": "bob"}, timeout=30)
    assert raw.get(f"/assets/{values['model']['sha256']}").status_code == 404
    assert raw.get(f"/creations/{values['creation_id']}").status_code == 404
    # Bob cannot run on Alice's thread, nor claim to be Alice in config.
    with pytest.raises(NotFoundError):
        stream(bob, owl["thread"]["thread_id"], "turn it into 3D")
    bobs = bob.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as refused:
        stream(bob, bobs["thread_id"], "find my brass owl", user_id="alice")
    assert refused.value.response.status_code == 403
    # Bob's recall of the very same words finds nothing of Alice's.
    parts = stream(bob, bobs["thread_id"], "find the brass owl automaton I made")
    recalled = [e for e in custom(parts, "step_end") if e["tool"] == "recall_similar"]
    assert recalled and recalled[0]["result"]["creations"] == []

    # Without a header the identity comes from config (or metadata), as in the issue; isolation still holds.
    anon = server.client()
    carol = anon.threads.create(metadata={"user_id": "carol"})
    assert carol["metadata"]["user_id"] == "carol"
    parts = stream(anon, carol["thread_id"], "show me my brass owl automaton", user_id="carol")
    assert [e["result"]["creations"] for e in custom(parts, "step_end") if e["tool"] == "recall_similar"] == [[]]
    alice_anon = anon.threads.create(metadata={"user_id": "alice"})
    parts = stream(anon, alice_anon["thread_id"], "show me my brass owl automaton", user_id="alice")
    found = [e["result"]["creations"] for e in custom(parts, "step_end") if e["tool"] == "recall_similar"][0]
    assert [c["creation_id"] for c in found] == [values["creation_id"]]
    with pytest.raises(NotFoundError):  # carol's thread is carol's, whoever claims otherwise
        stream(anon, carol["thread_id"], "show me the owl", user_id="alice")
    # Listings never mix users: anonymous search shows the user_id searched for ("local" when none).
    assert {t["metadata"]["user_id"] for t in anon.threads.search(metadata={"user_id": "carol"}, limit=100)} == {"carol"}
    assert anon.threads.search(limit=100) == []
    # The dev server's Studio bypass (x-auth-scheme: langsmith) is switched off in langgraph.json.
    studio = get_sync_client(url=server.url, api_key=None, headers={"x-auth-scheme": "langsmith", "X-Atelier-User": "bob"})
    with pytest.raises(NotFoundError):
        studio.threads.get_state(owl["thread"]["thread_id"])
    assert httpx.get(f"{server.url}/assets/{values['image']['sha256']}", params={"user_id": "carol"}).status_code == 404
    assert httpx.get(f"{server.url}/assets/{values['image']['sha256']}", params={"user_id": "alice"}).status_code == 200


def test_examples_run_against_the_server(server, tmp_path):
    """examples/api_curl.sh and examples/api_client.py, as documented, including coming back to a thread."""
    env = {**os.environ, "URL": server.url, "ATELIER_USER": "erin", "OUT": str(tmp_path / "curl"), "ENHANCE": "false"}
    curl = subprocess.run(["bash", str(ROOT / "examples" / "api_curl.sh"), "a brass owl automaton"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert curl.returncode == 0, curl.stdout + curl.stderr
    assert "→ text_to_image" in curl.stdout and "✓ image_to_3d (relief" in curl.stdout
    glbs = list((tmp_path / "curl").glob("*.glb"))
    assert len(glbs) == 1 and glbs[0].read_bytes()[:4] == b"glTF"

    cmd = [sys.executable, str(ROOT / "examples" / "api_client.py"), "--url", server.url, "--user", "erin", "--no-enhance",
           "--out", str(tmp_path / "py")]
    first = subprocess.run([*cmd, "a clockwork hummingbird"], capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "✓ text_to_image" in first.stdout and "saved model" in first.stdout
    assert [p.read_bytes()[:4] for p in (tmp_path / "py").glob("*.glb")] == [b"glTF"]
    thread = re.search(r"--thread (\S+)", first.stdout).group(1)
    again = subprocess.run([*cmd, "--thread", thread, "find the clockwork hummingbird I made"], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "✓ recall_similar" in again.stdout and "clockwork hummingbird" in again.stdout


def test_review_interrupt_resumes_through_the_sdk_and_history_is_readable(server):
    alice = server.client("alice")
    thread = alice.threads.create()
    parts = stream(alice, thread["thread_id"], "a glass jellyfish lamp", review_prompt=True, auto_3d=False)
    interrupts = [d["__interrupt__"] for mode, d in parts if mode == "updates" and "__interrupt__" in d]
    assert interrupts and interrupts[0][0]["value"]["type"] == "review_prompt"
    assert interrupts[0][0]["value"]["idea"] == "a glass jellyfish lamp"
    paused = alice.threads.get_state(thread["thread_id"])
    assert paused["next"] == ["review"]
    assert alice.threads.get(thread["thread_id"])["status"] == "interrupted"

    edited = "a glass jellyfish lamp, soft studio light, dark background"
    parts = stream(alice, thread["thread_id"], command={"resume": {"prompt": edited}}, review_prompt=True, auto_3d=False)
    made = [e for e in custom(parts, "step_end") if e["tool"] == "text_to_image"]
    assert made and made[0]["result"]["creation_id"]
    state = alice.threads.get_state(thread["thread_id"])
    assert state["next"] == [] and state["values"]["enhanced_prompt"] == edited
    record = httpx.get(f"{server.url}/creations/{made[0]['creation_id']}", headers={"X-Atelier-User": "alice"}).json()
    assert record["enhanced_prompt"] == edited and record["original_prompt"] == "a glass jellyfish lamp"

    history = alice.threads.get_history(thread["thread_id"], limit=100)
    assert len(history) >= 6
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]  # newest first
    assert [h["created_at"] for h in history] == sorted((h["created_at"] for h in history), reverse=True)
    assert any(h["next"] == ["review"] for h in history)  # the pause is in the history
    # Any past checkpoint can be read back.
    at_pause = next(h for h in history if h["next"] == ["review"])
    old = alice.threads.get_state(thread["thread_id"], checkpoint_id=at_pause["checkpoint"]["checkpoint_id"])
    assert old["next"] == ["review"] and old["values"]["enhanced_prompt"] not in (None, edited)


def test_restart_the_server_and_continue_the_thread(server, owl):
    thread_id = owl["thread"]["thread_id"]
    before = server.client("alice").threads.get_state(thread_id)
    checkpoints = len(server.client("alice").threads.get_history(thread_id, limit=100))
    server.restart()
    alice = server.client("alice")
    after = alice.threads.get_state(thread_id)
    assert after["checkpoint"]["checkpoint_id"] == before["checkpoint"]["checkpoint_id"]
    assert after["values"]["creation_id"] == owl["state"]["values"]["creation_id"]
    assert len(alice.threads.get_history(thread_id, limit=100)) == checkpoints
    parts = stream(alice, thread_id, "find the brass owl I made")
    found = [e["result"]["creations"] for e in custom(parts, "step_end") if e["tool"] == "recall_similar"][0]
    assert found and found[0]["creation_id"] == owl["state"]["values"]["creation_id"]
    state = alice.threads.get_state(thread_id)
    assert len(state["values"]["messages"]) > len(before["values"]["messages"])
    # The runtime's own state lives under the data dir, not in the server's working directory (the repo).
    assert (server.data_dir / "api" / ".langgraph_api").is_dir()
    assert not (server.data_dir / ".langgraph_api").exists()


# -- issue 13: the holes an attacker found, closed (items 1, 2, 5, 7) -------------------------------------------
def server_rss(service) -> int:
    """Resident memory of the server process and its children (bytes)."""
    import psutil

    proc = psutil.Process(service.proc.pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_users_cannot_change_or_delete_the_shared_assistant(server):
    bob, alice = server.client("bob"), server.client("alice")
    assistant = bob.assistants.search(graph_id="atelier", limit=10)[0]  # reading is allowed
    for attempt in (lambda: bob.assistants.update(assistant["assistant_id"], config={"configurable": {"review_prompt": True}}),
                    lambda: bob.assistants.delete(assistant["assistant_id"]),
                    lambda: bob.assistants.create("atelier", config={"configurable": {"review_prompt": True}})):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            attempt()
        assert refused.value.response.status_code == 403
        assert "assistants are shared" in refused.value.response.text
    assert alice.assistants.get(assistant["assistant_id"])["version"] == assistant["version"]
    # Alice's next run behaves as before: no review pause (bob's PATCH did not land), no 404 (nor his DELETE).
    thread = alice.threads.create()
    parts = stream(alice, thread["thread_id"], "a copper fox lantern", enhance=False, auto_3d=False)
    assert not [d for mode, d in parts if mode == "updates" and "__interrupt__" in d]
    assert [e["tool"] for e in custom(parts, "step_end")] == ["text_to_image"]


def test_oversized_and_invalid_runs_are_refused_quickly_and_store_nothing(server):
    dana = server.client("dana")
    raw = httpx.Client(base_url=server.url, headers={"X-Atelier-User": "dana"}, timeout=60)
    thread = dana.threads.create()
    runs_url = f"/threads/{thread['thread_id']}/runs/wait"
    rss_before = server_rss(server.service)

    def run(content, **configurable):
        return {"assistant_id": "atelier", "input": {"messages": [{"role": "user", "content": content}]},
                "config": {"configurable": {"enhance": False, **configurable}}}

    started = time.monotonic()
    two_mb = raw.post(runs_url, json=run("a castle " * 233_017))  # 2 MB of JSON
    assert two_mb.status_code == 413 and "the limit is 262144" in two_mb.json()["detail"]
    twenty_mb = raw.post(runs_url, content=b'{"input": {"messages": [{"content": "' + b"x" * 20_000_000 + b'"}]}}',
                         headers={"content-type": "application/json"})
    assert twenty_mb.status_code == 413
    assert time.monotonic() - started < 5, "refused before reading and parsing the body"

    too_long = raw.post(runs_url, json=run("y" * 4001))  # under the body cap, over ATELIER_MAX_IDEA_CHARS
    assert too_long.status_code == 422 and too_long.json()["detail"] == "the message is 4001 characters long; the limit is 4000"
    for configurable, detail in (({"seed": 2**63}, "seed must be between 0 and 9223372036854775807"),
                                 ({"seed": -5}, "seed must be between 0 and 9223372036854775807, not -5"),
                                 ({"width": 4096}, "width must be between 64 and 2048, not 4096"),
                                 ({"steps": 0}, "steps must be between 1 and 200, not 0")):
        refused = raw.post(runs_url, json=run("a red fox", **configurable))
        assert refused.status_code == 422 and refused.json()["detail"].startswith(detail), refused.text
    # Nothing was run, stored or kept in memory for any of them.
    assert dana.runs.list(thread["thread_id"]) == []
    assert raw.get("/creations").json()["creations"] == []
    assert server_rss(server.service) - rss_before < 64 * 2**20

    # Control characters in a message are stripped before anything sees or stores the idea.
    parts = stream(dana, thread["thread_id"], "a \x1b[31mcopper\x1b[0m owl\x00 lantern\x07", enhance=False, auto_3d=False)
    made = [e for e in custom(parts, "step_end") if e["tool"] == "text_to_image"][0]
    record = raw.get(f"/creations/{made['creation_id']}").json()
    assert record["original_prompt"] == "a copper owl lantern"
    state = dana.threads.get_state(thread["thread_id"])
    assert state["values"]["messages"][0]["content"] == "a copper owl lantern"


def test_query_numbers_and_identity_headers_are_checked(server):
    url = server.url
    for params, field in (({"offset": "9223372036854775808"}, "offset"), ({"offset": "-1"}, "offset"),
                          ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "abc"}, "limit")):
        response = httpx.get(f"{url}/creations", params=params, headers={"X-Atelier-User": "alice"})
        assert response.status_code == 422 and response.json()["detail"].startswith(f"{field} must be"), response.text
    assert httpx.get(f"{url}/creations", params={"offset": "1000000"}, headers={"X-Atelier-User": "alice"}).json()["creations"] == []

    duplicated = httpx.get(f"{url}/creations", headers=[("X-Atelier-User", "alice"), ("X-Atelier-User", "bob")])
    assert duplicated.status_code == 400 and "more than once" in duplicated.json()["detail"]
    threads = httpx.post(f"{url}/threads/search", json={}, headers=[("X-Atelier-User", "bob"), ("X-Atelier-User", "alice")])
    assert threads.status_code == 400
    # Two different undecodable names are refused, not both mapped to the same "\ufffd" user.
    for name in (b"\xff\xfeeve", b"\xfe\xffeve"):
        for method, path in (("GET", "/creations"), ("POST", "/threads")):
            response = httpx.request(method, f"{url}{path}", headers=[("X-Atelier-User", name)], json={} if method == "POST" else None)
            assert response.status_code == 400 and "not valid UTF-8" in response.json()["detail"], (path, response.text)
    # Control characters in a user id: refused, and the refusal does not echo them raw. (A raw ESC is already
    # refused by the HTTP parser; a C1 control, UTF-8 encoded, reaches the identity check.)
    response = httpx.post(f"{url}/threads", json={}, headers=[("X-Atelier-User", "eve\u009b2J".encode())])
    assert response.status_code == 401 and "control characters" in response.text and "\u009b" not in response.text
    response = httpx.post(f"{url}/threads", json={}, headers=[("X-Atelier-User", b"eve\x1b[2J")])
    assert response.status_code in (400, 401) and "\x1b" not in response.text


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    service = start_api(tmp_path_factory.mktemp("api-tokens"), ATELIER_LLM_THREADS="1",
                        ATELIER_API_KEYS="alice:tok-alice,bob:tok-bob,ops:tok-ops", ATELIER_API_ADMINS="ops")
    try:
        yield service
    finally:
        service.stop()


def test_with_tokens_only_an_admin_may_change_assistants(token_server):
    def client(token):
        return get_sync_client(url=token_server.url, api_key=None, headers={"Authorization": f"Bearer {token}"}, timeout=300)

    bob, alice, ops = client("tok-bob"), client("tok-alice"), client("tok-ops")
    assistant = bob.assistants.search(graph_id="atelier", limit=10)[0]
    for who in (bob, alice):
        for attempt in (lambda who=who: who.assistants.update(assistant["assistant_id"], config={"configurable": {"review_prompt": True}}),
                        lambda who=who: who.assistants.delete(assistant["assistant_id"])):
            with pytest.raises(httpx.HTTPStatusError) as refused:
                attempt()
            assert refused.value.response.status_code == 403
    # A header claim means nothing with tokens on: bob saying he is ops is still bob.
    spoof = httpx.patch(f"{token_server.url}/assistants/{assistant['assistant_id']}", json={"metadata": {"x": 1}},
                        headers={"Authorization": "Bearer tok-bob", "X-Atelier-User": "ops"})
    assert spoof.status_code == 403
    thread = alice.threads.create()
    parts = stream(alice, thread["thread_id"], "a copper fox lantern", enhance=False, auto_3d=False)
    assert not [d for mode, d in parts if mode == "updates" and "__interrupt__" in d]
    assert [e["tool"] for e in custom(parts, "step_end")] == ["text_to_image"]
    # The admin may (the cheap escape hatch for operators): a metadata change, harmless to the runs above.
    updated = ops.assistants.update(assistant["assistant_id"], metadata={"owner": "ops"})
    assert updated["metadata"]["owner"] == "ops"


def test_a_new_run_starts_at_once_not_at_the_next_poll(server):
    """The in-memory runtime's scheduler slept 0.5 s between idle polls and only took runs created before its
    sleep began, so each run on an idle server waited 0.5-1.0 s for a worker (agent/inmem_queue.py)."""
    from datetime import datetime

    alice = server.client("alice")
    waits = []
    for i in range(3):
        thread = alice.threads.create()
        run = alice.runs.create(thread["thread_id"], "atelier", input={"messages": [{"role": "user", "content": f"a tin robot {i}"}]},
                                config={"configurable": {"enhance": False, "auto_3d": False}})
        alice.runs.join(thread["thread_id"], run["run_id"])
        first_checkpoint = min(datetime.fromisoformat(h["created_at"]) for h in alice.threads.get_history(thread["thread_id"], limit=50))
        waits.append((first_checkpoint - datetime.fromisoformat(run["created_at"])).total_seconds())
        time.sleep(0.7)  # let the scheduler go idle again, as between two users' requests
    assert sorted(waits)[1] < 0.3, f"queue waits {waits}"
