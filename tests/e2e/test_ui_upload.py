"""A picture of one's own in the studio (ui/app.py handle_picture), in a real browser: attached in the chat with
"make this 3D", it becomes a creation (source upload: upright, metadata stripped) and a 3D model shown in the viewer;
a file that is not a picture is refused with a reason and stores nothing."""
from __future__ import annotations

import pytest
from PIL import Image

import ui_helpers as h

pytestmark = pytest.mark.skipif(h.browser_available() is not None, reason=str(h.browser_available()))


def photo(path):
    image = Image.new("RGB", (240, 160), (235, 235, 228))
    image.paste((200, 40, 40), (60, 30, 180, 130))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: 160x240
    exif[0x010F] = "PhoneMaker"
    image.save(path, "JPEG", exif=exif, quality=92)
    return path


def attach(driver, path) -> None:
    from selenium.webdriver.common.by import By

    inputs = h.wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=file]"), 30, message="the upload input")
    inputs[0].send_keys(str(path))
    h.wait_until(lambda: path.name in h.page_text(driver) or driver.find_elements(By.CSS_SELECTOR, "#attachments img, .attachment"),
                 30, message="the attachment in the composer")


def test_a_picture_attached_in_the_chat_becomes_a_3d_model(tmp_path, shots):
    studio = h.Studio(tmp_path / "data").start()
    driver = h.make_driver()
    try:
        h.open_studio(driver, studio.url)
        attach(driver, photo(tmp_path / "mug.jpg"))
        h.send_message(driver, "make this 3D")
        h.wait_until(lambda: h.viewer_loaded(driver), 120, message=f"the 3D viewer\n{studio.log()[-3000:]}")
        h.wait_idle(driver)
        text = h.page_text(driver)
        assert "image_to_3d · relief ·" in text and "Traceback" not in text, text[-1500:]
        card = driver.find_elements("css selector", "[data-atelier-creation]")[-1]
        assert card.get_attribute("data-status") == "complete"
        h.save_screenshot(driver, "09-upload-to-3d", directory=shots)
        creation_id = card.get_attribute("data-atelier-creation")

        notes = tmp_path / "notes.png"
        notes.write_text("this is not a picture")
        attach(driver, notes)
        h.send_message(driver, "make this 3D")
        h.wait_for_text(driver, "I can't use that picture: the picture is not a PNG, JPEG or WebP image", 60)
    finally:
        driver.quit()
        studio.stop()

    from memory.settings import MemorySettings
    from memory.store import MemoryStore

    store = MemoryStore(MemorySettings(data_dir=tmp_path / "data"))
    creations = store.list("local")
    assert [c.id for c in creations] == [creation_id]  # the refused file stored nothing
    view = creations[0]
    assert view.image.backend == "upload" and view.model is not None and view.original_prompt == "uploaded picture mug.jpg"
    stored = Image.open(view.image.path)
    assert stored.size == (160, 240) and not stored.getexif() and b"PhoneMaker" not in open(view.image.path, "rb").read()


def test_client_mode_the_picture_goes_to_the_api_server(tmp_path):
    """With ATELIER_API_URL the picture is POSTed to the server's /creations and the run is the server's."""
    from services import start_api

    api = start_api(tmp_path / "api-data")
    studio = h.Studio(tmp_path / "studio-data", env={"ATELIER_API_URL": api.url, "ATELIER_UI_USER": "remote-ui"})
    driver = None
    try:
        studio.start(timeout=180)
        driver = h.make_driver()
        h.open_studio(driver, studio.url)
        attach(driver, photo(tmp_path / "mug.jpg"))
        h.send_message(driver, "a red mug on a white table")
        h.wait_until(lambda: h.viewer_loaded(driver), 180, message=f"the 3D viewer\n{studio.log()[-3000:]}")
        h.wait_idle(driver)
        creation_id = driver.find_elements("css selector", "[data-atelier-creation]")[-1].get_attribute("data-atelier-creation")
    finally:
        if driver is not None:
            driver.quit()
        studio.stop()
        api.stop()

    from memory.settings import MemorySettings
    from memory.store import MemoryStore

    server = MemoryStore(MemorySettings(data_dir=tmp_path / "api-data"))
    (view,) = server.list("remote-ui")
    assert view.id == creation_id and view.image.backend == "upload" and view.status == "complete"
    assert view.original_prompt == "a red mug on a white table"
    assert not list((tmp_path / "studio-data").glob("assets/*/*"))  # nothing kept by the studio itself
