"""Helpers for the studio's browser tests: a real Chainlit server on a free port, headless Chromium
driven by selenium, screenshots, pixel checks and synthesised speech."""
from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CHROMIUM = os.environ.get("ATELIER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ATELIER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "docs" / "screenshots"

CHROME_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--enable-unsafe-swiftshader", "--use-gl=angle", "--use-angle=swiftshader", "--window-size=1360,1000",
    "--disable-features=Translate,MediaRouter,OptimizationHints", "--lang=en-US",
]


def browser_available() -> str | None:
    """None when the browser tests can run here, else why not."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is not installed"
    if not (ROOT / "public" / "vendor" / "model-viewer" / "model-viewer.min.js").exists():
        return "public/vendor is missing (run ui/build_assets.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """`python -m chainlit run ui/app.py` as `atelier chat` starts it, with its own data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(data_dir)
        self.log_path = log_path or self.data_dir / "studio.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
            "ATELIER_DATA_DIR": str(self.data_dir),
            "ATELIER_IMAGE_BACKENDS": "sketch", "ATELIER_MODEL_BACKENDS": "relief", "ATELIER_DECISION_POLICY": "router",
            "ATELIER_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        for key in [k for k, v in self.env.items() if v is None]:
            self.env.pop(key)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Studio:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        cmd = [PYTHON, "-m", "chainlit", "run", "ui/app.py", "--headless", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)  # never leave a server behind, whatever happens to the test
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"studio did not start in {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()


def make_driver(fake_audio: Path | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    if fake_audio is not None:
        options.add_argument("--use-fake-ui-for-media-stream")
        options.add_argument("--use-fake-device-for-media-stream")
        options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}")
        options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_until(fn, timeout: float = 60, interval: float = 0.25, message: str = "condition"):
    deadline = time.time() + timeout
    last_exc = None
    while time.time() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # the DOM changes under us while React renders
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}" + (f" (last error: {last_exc})" if last_exc else ""))


def sign_in(driver, url: str, user: str, password: str, timeout: float = 60) -> None:
    """Fill in Chainlit's login form and submit it."""
    from selenium.webdriver.common.by import By

    if not driver.current_url.startswith(url):
        driver.get(url)
    field = wait_until(lambda: (driver.find_elements(By.ID, "email") or driver.find_elements(By.CSS_SELECTOR, "input[name=email]"))[0],
                       timeout, message="the login form")
    field.clear()
    field.send_keys(user)
    pw = driver.find_element(By.ID, "password")
    pw.clear()
    pw.send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def open_studio(driver, url: str, user: str | None = None, password: str | None = None, timeout: float = 60) -> None:
    """Open the studio; sign in with the form when a user is given (auth on), else the local user signs in silently."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    if user is not None:
        sign_in(driver, url, user, password or "", timeout)
    wait_until(lambda: driver.find_elements(By.ID, "chat-input"), timeout, message="the message box")
    time.sleep(0.5)  # the socket connects right after the page renders


def open_settings(driver, timeout: float = 30) -> None:
    """Open the settings panel. Its button appears only once the chat start has sent the ChatSettings, which
    can be a moment after the message box (slower on a busy box)."""
    from selenium.webdriver.common.by import By

    wait_until(lambda: driver.find_element(By.ID, "chat-settings-open-modal"), timeout, message="the settings button").click()


def send_message(driver, text: str) -> None:
    """Type into the composer and send. A leading /command picks the command from Chainlit's popover first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def box():
        return wait_until(lambda: driver.find_element(By.ID, "chat-input"), 30, message="the message box")

    wait_until(lambda: driver.find_element(By.ID, "chat-submit") and not driver.find_elements(By.ID, "stop-button"), 120,
               message="the composer to be free")
    box().click()
    box().send_keys(text)
    time.sleep(0.5)
    if text.startswith("/") and " " not in text.strip():
        box().send_keys(Keys.ENTER)  # the first Enter picks the command from Chainlit's list, the second sends
        time.sleep(0.5)
    box().send_keys(Keys.ENTER)


def click(driver, element) -> None:
    """Click like a user, after scrolling the element to the middle (Chainlit's floating buttons cover the edges)."""
    from selenium.common.exceptions import ElementClickInterceptedException

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.2)
    try:
        element.click()
    except ElementClickInterceptedException:
        driver.execute_script("arguments[0].click()", element)


def page_text(driver) -> str:
    return driver.execute_script("return document.body.innerText") or ""


def innermost(driver, text: str):
    """The last, innermost element whose text contains `text` (a step's title, to click it open)."""
    found = driver.find_elements("xpath", f"//*[contains(., '{text}') and not(*[contains(., '{text}')])]")
    assert found, f"nothing shows {text!r}"
    return found[-1]


def wait_for_text(driver, text: str, timeout: float = 90) -> None:
    wait_until(lambda: text in page_text(driver), timeout, message=f"the text {text!r}")


def wait_idle(driver, timeout: float = 120) -> None:
    """Until the agent has finished (Chainlit shows a stop button while a task runs)."""
    from selenium.webdriver.common.by import By

    time.sleep(0.5)
    wait_until(lambda: not driver.find_elements(By.ID, "stop-button"), timeout, message="the agent to finish")


def count(driver, css: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", css))


def image_loaded(driver, css: str) -> bool:
    return bool(driver.execute_script(
        "const els = document.querySelectorAll(arguments[0]); if (!els.length) return false;"
        "return Array.from(els).every(i => i.complete && i.naturalWidth > 0);", css))


def viewer_loaded(driver, css: str = "model-viewer") -> bool:
    return bool(driver.execute_script(
        "const els = document.querySelectorAll(arguments[0]); if (!els.length) return false;"
        "const mv = els[els.length - 1]; return !!(mv.loaded && mv.modelIsVisible);", css))


def scroll_to(driver, element, block: str = "start") -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: arguments[1]})", element, block)
    time.sleep(0.6)


def element_png(driver, element) -> bytes:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    time.sleep(0.6)  # the viewer renders on the next frames once visible
    return element.screenshot_as_png


def pixel_stats(png: bytes) -> tuple[float, int]:
    """(variance of the grey levels, number of distinct colours): a blank canvas has ~0 and 1."""
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    grey = arr.mean(axis=2)
    colours = len(np.unique(arr.reshape(-1, 3).astype(np.uint8), axis=0))
    return float(grey.var()), colours


def save_screenshot(driver, name: str, element=None, directory: Path | None = None, max_kb: int = 290) -> Path:
    """A PNG (docs/screenshots unless another directory is given), shrunk (palette, then size) under max_kb."""
    from PIL import Image

    # Chainlit's floating "scroll to the bottom" button would sit on top of whatever is shown.
    driver.execute_script("document.querySelectorAll('div.absolute.bottom-4').forEach(e => e.style.visibility = 'hidden')")
    png = element_png(driver, element) if element is not None else driver.get_screenshot_as_png()
    driver.execute_script("document.querySelectorAll('div.absolute.bottom-4').forEach(e => e.style.visibility = '')")
    directory = Path(directory or SCREENSHOTS)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.png"
    img = Image.open(io.BytesIO(png)).convert("RGB")
    for scale in (1.0, 0.85, 0.7, 0.55, 0.45):
        candidate = img if scale == 1.0 else img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
        quantised = candidate.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buf = io.BytesIO()
        quantised.save(buf, format="PNG", optimize=True)
        if buf.tell() <= max_kb * 1024:
            break
    target.write_bytes(buf.getvalue())
    return target


def speech_wav(text: str, path: Path, lead_silence: float = 0.6, tail_silence: float = 2.5) -> Path:
    """Synthesised speech (espeak-ng), 16 kHz mono, with silence around it, as Chromium's fake microphone."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path), "pad", str(lead_silence), str(tail_silence)],
                   check=True, capture_output=True)
    raw.unlink(missing_ok=True)
    return path


def noise_wav(path: Path, seconds: float = 4.0) -> Path:
    """Quiet background noise and no words: what a microphone in a silent room hears."""
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), "brownnoise", "vol", "0.02"],
                   check=True, capture_output=True)
    return path


def click_mic(driver) -> None:
    """The composer's microphone button (Chainlit gives it no id): the button holding the mic icon, or the
    stop (X) icon while recording. It is the first button of the composer that is not the send button."""
    script = """
        const composer = document.getElementById('message-composer');
        if (!composer) return false;
        for (const b of composer.querySelectorAll('button')) {
          if (b.id === 'chat-submit' || b.disabled) continue;
          const paths = Array.from(b.querySelectorAll('svg path')).map(p => p.getAttribute('d') || '');
          const mic = paths.some(d => d.startsWith('M4.5 9C3.67157'));
          const stop = (b.querySelector('svg') || {classList: {contains: () => false}}).classList.contains('lucide-x');
          if (mic || stop) { b.click(); return true; }
        }
        return false;"""
    wait_until(lambda: driver.execute_script(script), 20, message="the microphone button")


def fetch_status(driver, url: str) -> int:
    """HTTP status of a same-origin GET made by the page (with its cookies)."""
    return int(driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0], {credentials: 'same-origin'})"
        ".then(r => done(r.status)).catch(() => done(-1));", url))


def have_tools() -> str | None:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def dump_browser_log(driver) -> str:
    try:
        return json.dumps(driver.get_log("browser")[-30:], indent=1)
    except Exception:
        return ""


def edit_review(driver, text: str) -> None:
    """Replace the paused prompt in the review card with `text` and press Edit."""
    from selenium.webdriver.common.keys import Keys

    area = driver.find_element("css selector", "[data-atelier-review-text]")
    area.click()
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(text)
    wait_until(lambda: driver.find_element("css selector", "[data-atelier-edit]").is_enabled(), 10, message="the edit button")
    click(driver, driver.find_element("css selector", "[data-atelier-edit]"))
