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
