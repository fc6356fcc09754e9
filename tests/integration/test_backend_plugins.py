"""Backends as plugins: an outside package registered through a real `atelier.backends` entry point (a dist-info
folder on sys.path, as pip would leave it) is found, used by `atelier create`, labelled in the studio and offered
the knobs it declares; an unknown name lists the known ones; a constructor's bug is never swallowed."""
from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, cli_env

PLUGIN = textwrap.dedent('''
    """An outside backend: flat stripes in the colour the prompt names (no Atelier import but the base class)."""
    import io
    from typing import ClassVar

    from PIL import Image

    from tools.backends.base import Backend, GeneratedAsset

    COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200)}


    class StripesBackend(Backend):
        name: ClassVar[str] = "stripes"
        kind: ClassVar[str] = "image"
        label: ClassVar[str] = "the Stripes plugin"
        supports_size: ClassVar[bool] = True
        supports_steps: ClassVar[bool] = True

        def generate(self, request, progress=None):
            colour = next((c for w, c in COLOURS.items() if w in request.prompt.lower()), (90, 90, 90))
            img = Image.new("RGB", (request.width, request.height), (250, 250, 250))
            for x in range(0, request.width, 16):
                img.paste(colour, (x, 0, x + 8, request.height))
            buf = io.BytesIO()
            img.save(buf, "PNG")
            return [GeneratedAsset("image", buf.getvalue(), "image/png", self.name, {"plugin": "stripes"})]


    class BuggyBackend:
        """Duck-typed (no base class). Its constructor has a bug that only shows when it is given a kind."""
        name = "buggy"
        kind = "image"

        def __init__(self, kind=None):
            self.channels = 3 if kind is None else kind.count()  # TypeError: count() takes at least 1 argument

        def generate(self, request, progress=None):
            raise AssertionError("never reached")
''')

ENTRY_POINTS = """[atelier.backends]
stripes = atelier_stripes:StripesBackend
buggy = atelier_stripes:BuggyBackend
gone = atelier_missing_module:Nothing
"""


def write_plugin(root: Path) -> Path:
    """A package and the dist-info pip would write for it; importlib.metadata reads entry_points.txt from there."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "atelier_stripes.py").write_text(PLUGIN)
    info = root / "atelier_stripes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: atelier-stripes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture
def plugin(tmp_path):
    import tools.backends as backends

    path = str(write_plugin(tmp_path / "site"))
    sys.path.insert(0, path)
    importlib.invalidate_caches()
    backends.refresh()
    yield backends
    sys.path.remove(path)
    sys.modules.pop("atelier_stripes", None)
    importlib.invalidate_caches()
    backends.refresh()


def test_entry_point_plugin_is_registered_with_its_declarations(plugin):
    found = plugin.available_backends()
    assert {"sketch", "relief", "diffusers", "hunyuan3d", "openfabric", "stripes"} <= set(found)
    stripes = found["stripes"]
    assert stripes.source == "entry point: stripes = atelier_stripes:StripesBackend"
    assert stripes.kinds == ("image",) and stripes.label("image") == "the Stripes plugin"
    assert stripes.supports("size") and stripes.supports("steps") and not stripes.supports("seed")
    assert not stripes.supports("needs_gpu") and not stripes.supports("learned")  # the defaults from base.Backend
    assert set(plugin.available_backends("model")) >= {"relief", "hunyuan3d", "openfabric"}
    assert "stripes" not in plugin.available_backends("model")
    # built-ins are registered by their own hook, with what they declare
    assert found["sketch"].source == "built-in: tools.backends.sketch"
    assert found["hunyuan3d"].supports("needs_gpu") and found["hunyuan3d"].supports("learned")
    assert found["openfabric"].label("model") == "Openfabric image-to-3D"
    # the plugin's image really comes from it
    image = plugin.load_backend("stripes", "image").generate(plugin.base.ImageRequest(prompt="a red barn", width=64, height=32))[0]
    assert Image.open(io.BytesIO(image.data)).getpixel((2, 2)) == (200, 30, 30)


def test_unknown_name_lists_the_known_ones(plugin):
    with pytest.raises(plugin.UnknownBackendError) as caught:
        plugin.load_backend("stable-difusion", "image")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, plugin.BackendError)
    message = str(caught.value)
    assert message.startswith("unknown backend 'stable-difusion' (known: ")
    for name in ("diffusers", "sketch", "stripes", "relief"):
        assert name in message
    # through the fallback: recorded as a failed attempt with that message, then the next backend is used
    assets, attempts = plugin.generate_with_fallback("image", ["stable-difusion", "sketch"], plugin.base.ImageRequest(prompt="a barn", width=64, height=64))
    assert [a.backend for a in attempts] == ["stable-difusion", "sketch"] and not attempts[0].ok
    assert "known: " in attempts[0].reason and "stripes" in attempts[0].reason and assets[0].backend == "sketch"
    with pytest.raises(plugin.BackendError, match=r"does not make models \(it makes: image\)"):
        plugin.load_backend("stripes", "model")


def test_a_broken_plugin_is_named_and_the_others_still_work(plugin):
    with pytest.raises(plugin.BackendError, match="gone = atelier_missing_module:Nothing failed to load: No module named 'atelier_missing_module'"):
        plugin.load_backend("gone", "image")
    assert "gone" in plugin.registry().broken and "gone" not in plugin.available_backends()
    assert plugin.load_backend("sketch", "image").name == "sketch"


def test_a_constructor_type_error_surfaces(plugin):
    # (the registry used to catch TypeError from cls(kind=...) and retry cls(), which hid exactly this bug)
    with pytest.raises(TypeError, match="count"):
        plugin.load_backend("buggy", "image")
    assets, attempts = plugin.generate_with_fallback("image", ["buggy", "sketch"], plugin.base.ImageRequest(prompt="a barn", width=64, height=64))
    assert not attempts[0].ok and "count() takes at least 1 argument" in attempts[0].reason
    assert attempts[1].ok and assets[0].backend == "sketch"


def test_settings_panel_and_views_read_the_plugin_declarations(plugin, monkeypatch):
    from models.settings import reset_settings
    from ui import settings_panel, views

    assert views.backend_label("stripes", "image") == "the Stripes plugin"
    assert views.backend_label("openfabric", "image") == "Openfabric text-to-image"
    assert views.backend_label("retired", "image") == "the retired backend"  # an old record's backend
    notes = views.fallback_notes("text_to_image", [{"backend": "stripes", "ok": False, "reason": "connection refused"}], "sketch")
    assert notes and notes[0].startswith("The Stripes plugin ") and notes[0].endswith("used the local sketch backend")

    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "stripes,sketch")
    reset_settings()
    try:
        widgets = {w.id: w for w in settings_panel.widgets()}
    finally:
        reset_settings()
    assert widgets["image_backend"].values[1:] == ["stripes", "sketch"]
    assert "stripes, sketch" in widgets["size"].description or "sketch, stripes" in widgets["size"].description
    assert widgets["steps"].description == "Used by: stripes."  # sketch declares no steps; the plugin does
    assert "seed" in widgets  # sketch declares a seed
    assert settings_panel.supported_by("steps", ["sketch", "relief"]) == []


def test_atelier_create_uses_the_plugin_from_its_entry_point(tmp_path):
    site = write_plugin(tmp_path / "site")
    # (the router decides and the prompt is not enhanced: the LLM is not what this test is about)
    env = cli_env(tmp_path / "data", ATELIER_IMAGE_BACKENDS="stripes,sketch", ATELIER_DECISION_POLICY="router",
                  PYTHONPATH=f"{site}:{ROOT}")
    out = subprocess.run([sys.executable, "-m", "agent.cli", "create", "a blue bicycle", "--json", "--user", "pat", "--no-3d",
                          "--no-enhance"],
                         cwd=ROOT, env=env, capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout)
    assert report["backends"]["image"] == "stripes"
    picture = Image.open(report["image"])
    assert picture.getpixel((2, 2)) == (30, 60, 200) and picture.getpixel((12, 2)) == (250, 250, 250)


def test_discovery_imports_no_heavy_module(tmp_path):
    code = ("import sys; from tools.backends import registry; r = registry(); "
            "print(sorted(r.backends), sorted(m for m in ('torch', 'diffusers', 'hy3dgen', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(tmp_path / "data"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['diffusers', 'hunyuan3d', 'openfabric', 'relief', 'sketch'] []"
