"""The history API (spec 7.3) on a real `atelier serve`: GET /creations with q / since / until / limit / offset,
GET /creations/{id} with lineage both ways, DELETE /creations/{id} (rows, vectors, unshared files), scoped to the
caller; and `atelier forget ID --user U`, the same from the CLI."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services import ROOT, atelier_env, start_api

pytestmark = pytest.mark.timeout(300)

# Runs in its own process (like any other writer of the data dir): a real MemoryStore, real SQLite, Chroma and
# embeddings. Dates are set in SQL and the index rebuilt, so Chroma's created_ts agrees with them.
SEED = r'''
import io, json, sys
from datetime import datetime, timedelta, timezone
from PIL import Image
from sqlalchemy import update
from memory.models import CreationRecord
from memory.store import MemoryStore
from tools.backends.base import GeneratedAsset

def png(colour):
    buf = io.BytesIO(); Image.new("RGB", (32, 32), colour).save(buf, "PNG"); return buf.getvalue()

store = MemoryStore()
now = datetime.now(timezone.utc)
shared = png((200, 20, 20))
def make(user, prompt, days_ago, assets, parent=None):
    view = store.create(user_id=user, thread_id=None, original_prompt=prompt, enhanced_prompt=prompt, assets=assets, parent_id=parent)
    with store.sessions.begin() as session:
        session.execute(update(CreationRecord).where(CreationRecord.id == view.id).values(created_at=now - timedelta(days=days_ago)))
    return view.id
ids = {}
ids["lighthouse"] = make("alice", "a red lighthouse on a rocky coast", 10,
                         [GeneratedAsset("image", shared, "image/png", "sketch"), GeneratedAsset("model", b"glTF-lighthouse-mesh", "model/gltf-binary", "relief")])
ids["copy"] = make("alice", "a red lighthouse poster for the hallway", 6, [GeneratedAsset("image", shared, "image/png", "sketch")])
ids["remix"] = make("alice", "the red lighthouse at night in a storm", 2, [GeneratedAsset("image", png((20, 20, 90)), "image/png", "sketch")],
                    parent=ids["lighthouse"])
ids["kite"] = make("alice", "a green dragon kite over a meadow", 0, [GeneratedAsset("image", png((20, 160, 40)), "image/png", "sketch")])
ids["teapot"] = make("bob", "a blue porcelain teapot", 1, [GeneratedAsset("image", png((30, 60, 200)), "image/png", "sketch")])
store.reindex()
print(json.dumps(ids))
'''


def seed(data_dir: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=atelier_env(data_dir), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("history-api")
    ids = seed(data_dir)
    service = start_api(data_dir, ATELIER_LLM_THREADS="1")
    try:
        yield service, ids, data_dir
    finally:
        service.stop()


def get(service, path: str, user: str, **params):
    return httpx.get(service.url + path, params=params, headers={"X-Atelier-User": user}, timeout=60)


def ids_of(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["creations"]]


def test_list_search_and_window_are_the_callers(api):
    service, ids, _ = api
    newest_first = [ids["kite"], ids["remix"], ids["copy"], ids["lighthouse"]]
    assert ids_of(get(service, "/creations", "alice")) == newest_first
    assert ids_of(get(service, "/creations", "bob")) == [ids["teapot"]]
    assert ids_of(get(service, "/creations", "alice", limit=2, offset=1)) == newest_first[1:3]

    found = get(service, "/creations", "alice", q="red lighthouse")
    assert found.json()["mode"] == "semantic"
    ranked = ids_of(found)  # by meaning: the three lighthouses first (the small embedding model may add the kite, lower)
    assert set(ranked[:3]) == {ids["lighthouse"], ids["copy"], ids["remix"]} and set(ranked) <= set(newest_first)
    assert all(c["score"] > 0 for c in found.json()["creations"])
    assert set(ids_of(get(service, "/creations", "bob", q="red lighthouse"))) <= {ids["teapot"]}  # never alice's

    four_days_ago = (datetime.now(UTC) - timedelta(days=4)).isoformat()
    assert ids_of(get(service, "/creations", "alice", since=four_days_ago)) == [ids["kite"], ids["remix"]]
    assert ids_of(get(service, "/creations", "alice", until=four_days_ago)) == [ids["copy"], ids["lighthouse"]]
    recent_lighthouses = ids_of(get(service, "/creations", "alice", q="red lighthouse", since=four_days_ago))
    assert recent_lighthouses[0] == ids["remix"] and set(recent_lighthouses) <= {ids["remix"], ids["kite"]}
    until_yesterday = get(service, "/creations", "alice", until="yesterday")  # a phrase recall understands: its end
    assert ids_of(until_yesterday) == newest_first[1:]
    assert until_yesterday.json()["until"] is not None
    # a time phrase inside q works as in recall_similar
    assert ids_of(get(service, "/creations", "alice", q="the lighthouse from 2 days ago")) == [ids["remix"]]


def test_huge_time_phrases_clamp_instead_of_failing(api):
    """?since=1000000 days ago once answered 500 (OverflowError in memory/timeparse.py): the phrase is clamped to the
    earliest representable day, which the answer's since / until show."""
    service, ids, _ = api
    everything = [ids["kite"], ids["remix"], ids["copy"], ids["lighthouse"]]
    for phrase in ("1000000 days ago", "99999999999 days ago", "the last 99999999999 weeks"):
        response = get(service, "/creations", "alice", since=phrase)
        assert ids_of(response) == everything and response.json()["since"].startswith("0001-01-02"), response.text
    assert ids_of(get(service, "/creations", "alice", until="1000000 days ago")) == []
    assert ids_of(get(service, "/creations", "alice", q="the lighthouse from 99999999999 days ago")) == []


@pytest.mark.parametrize("params, field", [({"since": "next blursday"}, "since"), ({"limit": "0"}, "limit"),
                                           ({"offset": "-1"}, "offset"), ({"since": "2026-05-02", "until": "2026-05-01"}, "since"),
                                           ({"q": "x" * 301}, "q")])
def test_bad_parameters_are_422_naming_the_field(api, params, field):
    service, _, _ = api
    response = get(service, "/creations", "alice", **params)
    assert response.status_code == 422 and field in response.json()["detail"], response.text


def test_detail_has_lineage_both_ways(api):
    service, ids, _ = api
    parent = get(service, f"/creations/{ids['lighthouse']}", "alice").json()
    assert parent["lineage"]["parent"] is None
    assert [r["id"] for r in parent["lineage"]["remixes"]] == [ids["remix"]]
    assert parent["lineage"]["remixes"][0]["url"] == f"/creations/{ids['remix']}"
    assert {a["kind"] for a in parent["assets"]} == {"image", "model"} and all("path" not in a for a in parent["assets"])
    remix = get(service, f"/creations/{ids['remix']}", "alice").json()
    assert remix["lineage"]["parent"]["id"] == ids["lighthouse"] and remix["lineage"]["remixes"] == []
    assert get(service, f"/creations/{ids['lighthouse']}", "bob").status_code == 404


def test_openapi_documents_the_history_routes(api):
    service, _, _ = api
    spec = httpx.get(service.url + "/openapi.json", timeout=60).json()
    assert spec["paths"]["/creations"]["get"]["summary"] == "Search and page through the caller's creations"
    assert {p["name"] for p in spec["paths"]["/creations"]["get"]["parameters"]} >= {"q", "since", "until", "limit", "offset"}
    assert set(spec["paths"]["/creations/{creation_id}"]) >= {"get", "delete"}
    assert "404" in spec["paths"]["/creations/{creation_id}"]["delete"]["responses"]


def test_delete_removes_rows_vectors_and_unshared_files_only_for_the_owner(api):
    service, ids, data_dir = api
    target = get(service, f"/creations/{ids['lighthouse']}", "alice").json()
    sha = {a["kind"]: a["sha256"] for a in target["assets"]}
    files = {kind: next((data_dir / "assets" / digest[:2]).glob(digest + ".*")) for kind, digest in sha.items()}

    refused = httpx.delete(f"{service.url}/creations/{ids['lighthouse']}", headers={"X-Atelier-User": "bob"}, timeout=60)
    assert refused.status_code == 404  # someone else's: the same as unknown, and nothing changed
    assert get(service, f"/creations/{ids['lighthouse']}", "alice").status_code == 200 and files["model"].exists()

    deleted = httpx.delete(f"{service.url}/creations/{ids['lighthouse']}", headers={"X-Atelier-User": "alice"}, timeout=60)
    assert deleted.status_code == 200, deleted.text
    result = deleted.json()
    assert result["files_removed"] == [files["model"].relative_to(data_dir).as_posix()]
    assert result["files_kept"] == [files["image"].relative_to(data_dir).as_posix()]  # the poster has the same picture
    assert not files["model"].exists() and files["image"].exists()
    assert get(service, f"/creations/{ids['lighthouse']}", "alice").status_code == 404
    assert httpx.get(f"{service.url}/assets/{sha['model']}", headers={"X-Atelier-User": "alice"}, timeout=60).status_code == 404
    assert httpx.get(f"{service.url}/assets/{sha['image']}", headers={"X-Atelier-User": "alice"}, timeout=60).status_code == 200
    assert get(service, f"/creations/{ids['remix']}", "alice").json()["lineage"]["parent"] is None  # the remix stays
    assert ids["lighthouse"] not in ids_of(get(service, "/creations", "alice", q="red lighthouse"))  # its vector is gone
    assert set(ids_of(get(service, "/creations", "alice", q="red lighthouse"))[:2]) == {ids["copy"], ids["remix"]}
    again = httpx.delete(f"{service.url}/creations/{ids['lighthouse']}", headers={"X-Atelier-User": "alice"}, timeout=60)
    assert again.status_code == 404


def atelier(data_dir: Path, *args: str):
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, env=atelier_env(data_dir), capture_output=True,
                          text=True, timeout=180)


def test_atelier_forget_cli(tmp_path):
    data_dir = tmp_path / "data"
    ids = seed(data_dir)
    refused = atelier(data_dir, "forget", ids["copy"], "--user", "bob")
    assert refused.returncode == 1 and "nothing was deleted" in refused.stderr
    out = atelier(data_dir, "forget", ids["copy"], "--user", "alice", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["id"] == ids["copy"] and result["files_removed"] == [] and len(result["files_kept"]) == 1  # the lighthouse's picture
    assert (data_dir / result["files_kept"][0]).exists()
    recalled = atelier(data_dir, "recall", "red lighthouse poster", "--user", "alice", "--json")
    assert recalled.returncode == 0, recalled.stderr
    found = [c["id"] for c in json.loads(recalled.stdout)["creations"]]
    assert ids["copy"] not in found and ids["lighthouse"] in found
    # the studio's thumbnail of the kite (ui/routes.py names it by the picture's hash) goes with the picture
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 160, 40)).save(buf, "PNG")  # the seed's kite picture, byte for byte
    kite_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    assert next((data_dir / "assets" / kite_sha[:2]).glob(kite_sha + ".*")).exists()
    thumb = data_dir / "ui_cache" / "thumbs" / f"{kite_sha[:40]}-256.jpg"
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"jpeg")
    out = atelier(data_dir, "forget", ids["kite"], "--user", "alice")
    assert out.returncode == 0 and out.stdout.startswith(f"forgot {ids['kite']}: 1 file(s) removed, 0 kept"), out.stdout
    assert not thumb.exists() and not list((data_dir / "assets" / kite_sha[:2]).glob(kite_sha + ".*"))
