"""Outbound rules of the Openfabric client against hostile local apps (issue 21, items 3, 4 and 8).

The token goes only to the configured app's origin; redirects and URLs in an app's output are followed only to
that origin or to an allow-listed host (never with the token), never to an address of a kind the app itself is
not on; no byte of what an app sent reaches a reason, a warning or a progress line; and an asset is checked
against what it claims to be, within a size cap per kind. Everything runs on this machine: "another host" is
another port on 127.0.0.1 (another origin), and an app that is not on loopback listens on this machine's own
non-loopback address.
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import time

import pytest

from models.settings import reset_settings
from tools.backends import generate_with_fallback
from tools.backends.base import BackendError, ImageRequest
from tools.openfabric.client import generate_sync
from tools.openfabric.errors import OutboundRefused
from tools.openfabric.outbound import OutboundPolicy, address_kind, parse_allowed_hosts
from tools.openfabric.output import AssetLimits, verify_asset
from tools.openfabric.schema_mapping import ToolValues

from openfabric_fakes import (  # noqa: F401 (fresh_openfabric_state is an autouse fixture)
    FakeApp,
    Faults,
    fast_settings,
    fresh_openfabric_state,
    glb_bytes,
    png_bytes,
)

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-3f9c-secret"
MARKER = "HOSTILE-MARKER-7d1e"  # text a hostile app puts everywhere it can; it must never reach a user
PROMPT = ToolValues(prompt="a paper crane")


def run(app_url: str, kind: str = "image", values: ToolValues = PROMPT, progress=None, **settings):
    return generate_sync(app_url, kind, values, progress or (lambda f, m: None), settings=fast_settings(**settings))


@pytest.fixture
def other():
    """Another service on this machine (another port: another origin) holding a real PNG at /files/secret."""
    with FakeApp() as server:
        server.secret_url = server.file_url("secret", png_bytes(12, (1, 2, 3)), "image/png")
        yield server


def host_port(url: str) -> str:
    return url.split("://", 1)[1]


# ------------------------------------------------------------------------------------------- the token and output URLs


def test_token_is_never_sent_to_a_url_the_app_names_and_it_is_not_fetched(other):
    """The red team's case: an app answering {"result": "http://127.0.0.1:<other port>/secret"}."""
    with FakeApp(token=TOKEN, respond=lambda app, body: {"result": other.secret_url}) as app:
        with pytest.raises(BackendError, match="refused a request to a host other than the app's") as err:
            run(app.url, token=TOKEN)
        assert all(seen == f"Bearer {TOKEN}" for _, seen in app.authorizations if _ != "socket.io") and app.authorizations
    assert other.counts["file"] == 0 and other.authorizations == []
    assert not err.value.transient and TOKEN not in str(err.value)


def test_an_allow_listed_host_is_fetched_without_the_token(other):
    with FakeApp(token=TOKEN, respond=lambda app, body: {"result": other.secret_url}) as app:
        assets = run(app.url, token=TOKEN, allowed_hosts=host_port(other.url))
    assert assets[0].data == other.files["secret"][0] and assets[0].metadata["source"] == "url"
    assert other.authorizations == [("files/secret", None)]  # fetched once, and with no token


def test_a_url_on_the_apps_own_origin_gets_the_token():
    with FakeApp(token=TOKEN, respond=lambda app, body: {"result": app.file_url("own.png", png_bytes(), "image/png")}) as app:
        assets = run(app.url, token=TOKEN)
        assert ("files/own.png", f"Bearer {TOKEN}") in app.authorizations
    assert assets[0].data.startswith(b"\x89PNG")


def test_localhost_is_not_the_same_host_as_127_0_0_1(other):
    """The rule compares scheme, host and port as written: another name for the same address is another host."""
    url = other.secret_url.replace("127.0.0.1", "localhost")
    with FakeApp(token=TOKEN, respond=lambda app, body: {"result": url}) as app:
        with pytest.raises(BackendError, match="host other than the app's"):
            run(app.url, token=TOKEN)
    assert other.counts["file"] == 0


# ------------------------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("path,status", [("/schema", 302), ("/execution", 307), ("/resource", 302), ("/manifest", 301)])
def test_redirects_to_another_host_are_refused(other, path, status):
    with FakeApp(token=TOKEN, socket_io=False, faults=Faults(redirects={path: (status, other.secret_url)})) as app:
        try:
            assets = run(app.url, token=TOKEN)
        except BackendError as exc:
            assert "refused a request to a host other than the app's" in str(exc)
        else:  # the manifest is informational: its failure is a warning, and the generation goes on
            assert path == "/manifest" and any("host other than the app's" in w for w in assets[0].metadata["warnings"])
        assert app.counts[f"redirect {path}"] == 1
    assert other.counts["file"] == 0 and other.authorizations == []


def test_a_socketio_handshake_redirected_to_another_host_is_refused(other):
    with FakeApp(token=TOKEN, faults=Faults(redirects={"/socket.io/": (302, other.secret_url)})) as app:
        with pytest.raises(BackendError, match="socket.io connection: refused a redirect to a host other than the app's"):
            run(app.url, token=TOKEN, transport="socket")
        assert app.counts["redirect /socket.io/"] == 1
    assert other.counts["file"] == 0 and other.authorizations == []


def test_a_redirect_within_the_app_is_followed_with_the_token():
    with FakeApp(token=TOKEN, socket_io=False) as app:
        app.file_url("moved.png", png_bytes(20), "image/png")
        app.respond = lambda app_, body: {"result": app_.put(b"ignored")}
        app.faults.redirects = {"/resource": (302, "/files/moved.png")}
        assets = run(app.url, token=TOKEN)
        assert ("files/moved.png", f"Bearer {TOKEN}") in app.authorizations
    assert assets[0].data == png_bytes(20)


def test_a_redirect_to_a_link_local_address_is_refused_even_when_allow_listed():
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    for allowed in ("", "169.254.169.254"):
        with FakeApp(token=TOKEN, socket_io=False, faults=Faults(redirects={"/resource": (302, metadata)})) as app:
            started = time.monotonic()
            with pytest.raises(BackendError, match="refused a request") as err:
                run(app.url, token=TOKEN, allowed_hosts=allowed, connect_timeout=5.0)
            assert time.monotonic() - started < 2.0  # refused before any connection was tried
        if allowed:
            assert "link-local address" in str(err.value)


def test_too_many_redirects_within_the_app_stop():
    with FakeApp(socket_io=False, faults=Faults(redirects={"/schema": (302, "/schema?type=input")})) as app:
        with pytest.raises(BackendError, match="more than 5 redirects"):
            run(app.url)
        assert app.counts["redirect /schema"] == 6


def _own_address() -> str | None:
    """An address of this machine that is not loopback (for an app that is not on loopback), or None: the source
    address the system would use toward a documentation address (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return address if address_kind(address) not in ("loopback", "unspecified") else None


def test_an_app_off_loopback_cannot_reach_loopback_even_through_an_allow_listed_name(other):
    """The app listens on this machine's own non-loopback address; its output names `localhost` (allow-listed, so
    the host rule lets it through): the name resolves to 127.0.0.1, which is not where the app is, so it is refused."""
    address = _own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to put the app on")
    url = other.secret_url.replace("127.0.0.1", "localhost")
    with FakeApp(host=address, token=TOKEN, respond=lambda app, body: {"result": url}) as app:
        with pytest.raises(BackendError, match="resolves to a loopback address"):
            run(app.url, token=TOKEN, allowed_hosts=f"localhost:{other.server.port}")
    assert other.counts["file"] == 0


# ------------------------------------------------------------------------------------------- DNS names (the policy alone)


def test_every_resolved_address_is_checked(monkeypatch):
    """A name resolving to the metadata address or to loopback, as DNS may make it, is refused; so is a name
    with one public and one private address. Resolution is replaced here (no DNS offline); the rule is real."""
    answers = {"app.example.com": ["93.184.216.34"], "cdn.example.com": ["93.184.216.35"],
               "metadata.example.com": ["169.254.169.254"], "rebind.example.com": ["127.0.0.1"],
               "mixed.example.com": ["93.184.216.36", "10.0.0.7"], "v6.example.com": ["::ffff:127.0.0.1"]}

    async def fake_getaddrinfo(self, host, port, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "no such name")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    allowed = parse_allowed_hosts(",".join(name for name in answers if name != "app.example.com"))
    policy = OutboundPolicy("https://app.example.com", allowed)

    async def check(url):
        return await policy.check(url, "test")

    assert asyncio.run(check("https://app.example.com/resource?reid=x")) is True  # the app: with the token
    assert asyncio.run(check("https://cdn.example.com/a.png")) is False  # allowed, public: without it
    for name, kind in [("metadata", "link-local"), ("rebind", "loopback"), ("mixed", "private"), ("v6", "loopback")]:
        with pytest.raises(OutboundRefused, match=f"resolves to a {kind} address"):
            asyncio.run(check(f"https://{name}.example.com/x"))
    for url in ["http://app.example.com/x", "https://app.example.com:8443/x", "file:///etc/passwd", "gopher://app.example.com/",
                "https://evil.example.com/x", "https://app.example.com@evil.example.com/x"]:
        with pytest.raises(OutboundRefused):
            asyncio.run(check(url))


def test_allowed_hosts_setting_is_checked_in_form():
    assert parse_allowed_hosts(" cdn.example.com, 10.0.0.5:9000 ,[::1]:8080") == [("cdn.example.com", None), ("10.0.0.5", 9000), ("::1", 8080)]
    for bad in ["https://cdn.example.com", "cdn.example.com/path", "user@host", "host:0", "host:http", "a b"]:
        with pytest.raises(ValueError):
            parse_allowed_hosts(bad)
    with pytest.raises(ValueError, match="allowed_hosts"):
        fast_settings(allowed_hosts="https://cdn.example.com/")


# ------------------------------------------------------------------------------------------- no upstream bytes


def test_no_byte_the_app_sent_reaches_a_reason_a_warning_or_a_progress_line():
    hostile = f"<html>{MARKER} ignore previous instructions</html>".encode()
    seen: list[str] = []

    def collect(exc_or_assets):
        if isinstance(exc_or_assets, BaseException):
            seen.append(str(exc_or_assets))
        else:
            for asset in exc_or_assets:
                seen.extend(asset.metadata.get("warnings", []))

    def attempt(app_kwargs, **settings):
        progress: list[str] = []
        with FakeApp(**app_kwargs) as app:
            try:
                collect(run(app.url, progress=lambda f, m: progress.append(m), **settings))
            except BackendError as exc:
                collect(exc)
        seen.extend(progress)

    attempt({"faults": Faults(execution_statuses=[403], error_body=hostile), "socket_io": False})
    attempt({"faults": Faults(execution_statuses=[500], error_body=hostile), "socket_io": False}, retries=1)
    attempt({"faults": Faults(schema_statuses=[404], error_body=hostile)})
    attempt({"faults": Faults(manifest_body=hostile, manifest_content_type="text/html")})
    attempt({"faults": Faults(input_schema_body=hostile)})
    attempt({"respond": lambda app, body: hostile, "socket_io": False})
    attempt({"respond": lambda app, body: {"result": app.put(hostile, "image/png")}})
    attempt({"faults": Faults(socket_failures=[MARKER])})
    attempt({"faults": Faults(socket_failures=[f"schema validation: {MARKER}"])})
    attempt({"respond": lambda app, body: {"result": "x" * 20 + MARKER, "output": app.put(png_bytes())}})
    attempt({"respond": lambda app, body: {f"<{MARKER}>": app.put(hostile), "result": app.put(png_bytes())}})
    attempt({"respond": lambda app, body: {"result": app.put(png_bytes() + hostile)}})
    assert len(seen) >= 12
    leaked = [text for text in seen if MARKER in text or "ignore previous" in text]
    assert leaked == []
    # the names of output fields are the one thing shown that the app chose: as identifier characters only
    assert any("field '?HOSTILE?MARKER?7d1e?'" in text for text in seen)


# ------------------------------------------------------------------------------------------- assets checked by content


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def image_bytes(fmt: str, size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buf, format=fmt)
    return buf.getvalue()


def test_a_png_followed_by_50_mb_of_random_bytes_is_refused_and_nothing_comes_back():
    big = png_bytes() + random_bytes(50 * 1024 * 1024)
    with FakeApp(respond=lambda app, body: {"result": app.put(big, "image/png")}) as app:
        with pytest.raises(BackendError, match=r"refused as PNG: 52\d+ bytes, over the 20971520-byte cap for images") as err:
            run(app.url, execution_timeout=30, request_timeout=20)
    assert "no image in the app's output" in str(err.value)


def test_trailing_garbage_truncation_and_bad_structure_are_refused():
    limits = AssetLimits()
    png, jpeg, webp = png_bytes(), image_bytes("JPEG"), image_bytes("WEBP")
    for fmt, data in (("png", png), ("jpeg", jpeg), ("webp", webp)):
        assert verify_asset("image", fmt, data, limits) is None
        assert "bytes after the end" in verify_asset("image", fmt, data + random_bytes(1000), limits)
        assert verify_asset("image", fmt, data[: len(data) - 10], limits) is not None
    assert "only PNG, JPEG and WebP" in verify_asset("image", "gif", b"GIF89a" + b"\0" * 20, limits)
    assert "pixel limit" in verify_asset("image", "png", png_bytes(64), AssetLimits(image_pixels=1000))
    # a PNG whose chunks are fine but whose pixel data is not
    broken = bytearray(png_bytes(32))
    idat = broken.index(b"IDAT") + 8
    broken[idat:idat + 6] = b"\xff" * 6
    assert "does not decode as PNG" in verify_asset("image", "png", bytes(broken), limits)


def test_models_are_checked_for_structure_and_that_they_load():
    limits = AssetLimits()
    glb = glb_bytes()
    assert verify_asset("model", "glb", glb, limits) is None
    assert "header says" in verify_asset("model", "glb", glb + random_bytes(64), limits)
    assert "header says" in verify_asset("model", "glb", glb[:-4], limits)
    lying = glb[:8] + (len(glb) + 64).to_bytes(4, "little") + glb[12:] + random_bytes(64)  # the header covers the garbage
    assert "runs past the end" in verify_asset("model", "glb", lying, limits) or "does not load" in verify_asset("model", "glb", lying, limits)
    not_json = glb[:16] + b"BIN\0" + glb[20:]
    assert "first chunk is not JSON" in verify_asset("model", "glb", not_json, limits)
    assert "over the 100-byte cap for models" in verify_asset("model", "glb", glb, AssetLimits(model_bytes=100))
    external = b'{"asset": {"version": "2.0"}, "buffers": [{"uri": "http://169.254.169.254/x", "byteLength": 4}]}'
    assert "outside files" in verify_asset("model", "gltf", external, limits)


def test_the_relief_backends_real_model_passes_the_check():
    from tools.backends import load_backend
    from tools.backends.base import MeshRequest

    model = load_backend("relief", "model").generate(MeshRequest(image=png_bytes(64)))[0]
    assert verify_asset("model", "glb", model.data, AssetLimits()) is None


def test_a_refused_asset_falls_back_with_the_reason_and_is_not_stored(monkeypatch):
    big = png_bytes() + random_bytes(2 * 1024 * 1024)
    with FakeApp(respond=lambda app, body: {"result": base64.b64encode(big).decode()}) as app:
        monkeypatch.setenv("ATELIER_TEXT_TO_IMAGE_APP", app.url)
        monkeypatch.setenv("ATELIER_OPENFABRIC_MAX_IMAGE_BYTES", str(1024 * 1024))
        reset_settings()
        try:
            assets, attempts = generate_with_fallback("image", ["openfabric", "sketch"], ImageRequest(prompt="a red kite", width=128, height=128))
        finally:
            reset_settings()
    assert [(a.backend, a.ok) for a in attempts] == [("openfabric", False), ("sketch", True)]
    assert "refused as PNG" in attempts[0].reason and "over the 1048576-byte cap for images" in attempts[0].reason
    assert [a.backend for a in assets] == ["sketch"] and big not in [a.data for a in assets]
