"""The studio as a client of the API server (ATELIER_API_URL): a real `atelier serve` and a real Chainlit studio with
separate data dirs, driven by headless Chromium. One request with prompt review on shows its steps live, pauses
for the review, resumes with the user's edit, and shows the image and the 3D viewer from the server's assets
(through the studio's /atelier/api-asset proxy); the creation and the thread are the server's, under the
Chainlit thread's id, and nothing lands in the studio's own data dir.
"""
from __future__ import annotations

import time

import httpx
import pytest

import ui_helpers as h
from services import start_api

pytestmark = [pytest.mark.skipif(h.browser_available() is not None, reason=str(h.browser_available())),
              pytest.mark.timeout(600)]

USER = "remote-ui"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = start_api(tmp_path_factory.mktemp("remote-api-data"), ATELIER_LLM_THREADS="1")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def studio(api, tmp_path_factory):
    # The studio's data dir holds only Chainlit's own thread list: no graph, no memory, no assets.
    server = h.Studio(tmp_path_factory.mktemp("remote-studio-data"),
                      env={"ATELIER_API_URL": api.url, "ATELIER_UI_USER": USER}).start(timeout=180)
    yield server
    server.stop()


def test_client_mode_review_steps_image_viewer_from_the_server(api, studio, shots):
    d = h.make_driver()
    try:
        h.open_studio(d, studio.url)
        h.open_settings(d)
        h.wait_until(lambda: d.find_elements("id", "review_prompt"), 30, message="the settings panel")
        d.find_element("id", "review_prompt").click()
        h.wait_until(lambda: d.find_element("id", "review_prompt").get_attribute("aria-checked") == "true", 10,
                     message="the review switch")
        d.find_element("id", "confirm").click()
        time.sleep(0.5)

        h.send_message(d, "a lantern made of folded paper")
        h.wait_until(lambda: h.count(d, "[data-atelier-review-text]"), 240, message="the prompt review (from the server)")
        assert "enhance_prompt" in h.page_text(d)  # the step streamed from the server's custom events
        assert h.count(d, "[data-atelier-image]") == 0  # paused before any image is made
        edited = "a lantern made of folded paper, warm glow, edited in the studio"
        h.edit_review(d, edited)

        h.wait_until(lambda: h.image_loaded(d, "[data-atelier-image]"), 180, message="the image from the server")
        h.wait_until(lambda: h.viewer_loaded(d), 180, message="the 3D viewer from the server")
        h.wait_until(lambda: "is saved" in h.page_text(d), 120, message="the reply")
        h.wait_idle(d, 180)
        h.save_screenshot(d, "09-client-mode", directory=shots)
        page = h.page_text(d)
        assert "Traceback" not in page and "text_to_image" in page and "image_to_3d" in page
        card = d.find_elements("css selector", "[data-atelier-creation]")[-1]
        cid = card.get_attribute("data-atelier-creation")
        assert edited in card.text
        # The server's graph wrote the reply: saved, under the card's id, said once (the studio adds only its hint).
        assert f"Creation {cid} is saved" in page and page.count("is saved") == 1 and "Saved as creation" not in page, page[-1500:]
        image_src = d.execute_script("return document.querySelector('[data-atelier-image]').getAttribute('src')")
        model_src = d.execute_script("return [...document.querySelectorAll('model-viewer')].pop().getAttribute('src')")
        assert "/atelier/api-asset/" in image_src and "/atelier/api-asset/" in model_src, (image_src, model_src)
        assert h.fetch_status(d, model_src) == 200
        assert h.fetch_status(d, "/atelier/api-asset/" + "0" * 64) == 404
        thread_id = d.current_url.rstrip("/").rsplit("/", 1)[-1]
    finally:
        d.quit()

    # The creation and the thread are the server's (one store per deployment), owned by the studio's user.
    client = httpx.Client(base_url=api.url, headers={"X-Atelier-User": USER}, timeout=60)
    creation = client.get(f"/creations/{cid}").json()
    assert creation["enhanced_prompt"] == edited and creation["thread_id"] == thread_id
    assert {a["kind"] for a in creation["assets"]} == {"image", "model"}
    assert [c["id"] for c in client.get("/creations").json()["creations"]] == [cid]
    thread = client.get(f"/threads/{thread_id}").json()
    assert thread["metadata"]["user_id"] == USER and thread["values"]["creation_id"] == cid
    assert httpx.get(f"{api.url}/creations/{cid}", headers={"X-Atelier-User": "someone-else"}, timeout=30).status_code == 404
    assert not (studio.data_dir / "assets").exists() and not (studio.data_dir / "atelier.db").exists()
