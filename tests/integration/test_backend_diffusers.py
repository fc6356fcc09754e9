"""The `diffusers` image backend, for real: tiny random-weight pipelines saved with save_pretrained, loaded by the
backend with from_pretrained(local_files_only=True) and run on the CPU. No mocks of diffusers."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tools.backends.base import BackendError, ImageRequest
from tools.backends.diffusers import FAMILIES, DiffusersBackend, detect_family, render_size

from conftest import ROOT, cli_env
from tiny_pipelines import save_tiny_sd, save_tiny_sdxl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """./models with two tiny pipelines: an SD 1.5-layout one and an SDXL-Turbo-layout one (two text encoders)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and the box's two cores are shared
    root = tmp_path_factory.mktemp("models")
    save_tiny_sd(root / "tiny-sd")
    save_tiny_sdxl(root / "tiny-sdxl-turbo")
    yield root
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def distilled_sd(models_dir, tmp_path_factory) -> Path:
    """An SD-layout pipeline whose scheduler spaces timesteps from the end, as SD-Turbo's does: 1 step by default."""
    return save_tiny_sd(tmp_path_factory.mktemp("distilled") / "tiny-sd-distilled", turbo=True)


@pytest.fixture
def use_models(models_dir, monkeypatch):
    """Point the settings at a models dir (and optionally one image model); settings re-read for each change."""
    from models.settings import reset_settings

    def choose(image_model: str | None = None, root: Path | None = None) -> None:
        monkeypatch.setenv("ATELIER_MODELS_DIR", str(root or models_dir))
        if image_model is None:
            monkeypatch.delenv("ATELIER_IMAGE_MODEL", raising=False)
        else:
            monkeypatch.setenv("ATELIER_IMAGE_MODEL", image_model)
        reset_settings()

    yield choose
    reset_settings()


@pytest.fixture(scope="module")
def backend() -> DiffusersBackend:
    return DiffusersBackend()


def _image(asset) -> Image.Image:
    assert asset.data[:8] == PNG_MAGIC and asset.mime == "image/png"
    return Image.open(io.BytesIO(asset.data))


def test_requested_size_is_honoured_on_the_cpu(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    exact = backend.generate(ImageRequest(prompt="a red fox in the snow", width=128, height=96, seed=1, steps=2))[0]
    assert _image(exact).size == (128, 96)
    md = exact.metadata
    assert exact.backend == "diffusers" and md["is_sketch"] is False
    assert (md["model"], md["pipeline"], md["family"]) == ("tiny-sd", "StableDiffusionPipeline", "sd")
    assert (md["device"], md["dtype"], md["placement"]) == ("cpu", "float32", "cpu")
    assert md["steps"] == 2 and md["guidance"] == 7.5 and md["seed"] == 1 and md["render_size"] == [128, 96]
    assert md["seconds"] > 0

    # 100x75 is not a multiple of the VAE's 8: rendered at 104x80, then fitted to exactly what was asked
    odd = backend.generate(ImageRequest(prompt="a red fox in the snow", width=100, height=75, seed=1, steps=2))[0]
    assert _image(odd).size == (100, 75) and odd.metadata["render_size"] == [104, 80]


def test_same_seed_same_picture_other_seed_another(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    request = dict(prompt="a lighthouse at dusk", width=64, height=64, steps=2)
    first = backend.generate(ImageRequest(**request, seed=42))[0]
    again = backend.generate(ImageRequest(**request, seed=42))[0]
    other = backend.generate(ImageRequest(**request, seed=43))[0]
    assert first.data == again.data
    assert other.data != first.data
    # no seed: a random one, recorded so the picture can be made again
    unseeded = backend.generate(ImageRequest(**request))[0]
    seed = unseeded.metadata["seed"]
    assert isinstance(seed, int) and backend.generate(ImageRequest(**request, seed=seed))[0].data == unseeded.data


def test_progress_is_one_event_per_denoising_step(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    events: list[tuple[float | None, str]] = []
    backend.generate(ImageRequest(prompt="a paper boat", width=64, height=64, seed=3, steps=4), lambda f, m: events.append((f, m)))
    steps = [(f, m) for f, m in events if f is not None]
    assert [m for _, m in steps] == [f"denoising step {i}/4" for i in range(1, 5)]
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == 1.0


def test_negative_prompt_reaches_the_pipeline(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    request = dict(prompt="a castle on a hill", width=64, height=64, seed=9, steps=2, guidance=7.5)
    plain = backend.generate(ImageRequest(**request))[0]
    negative = backend.generate(ImageRequest(**request, negative_prompt="fog, blur"))[0]
    assert negative.metadata["negative_prompt"] is True and plain.metadata["negative_prompt"] is False
    assert negative.data != plain.data  # with guidance the negative prompt replaces the empty unconditional one


def test_guidance_and_steps_are_overridable(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    asset = backend.generate(ImageRequest(prompt="a fox", width=64, height=64, seed=2, steps=1, guidance=0.0))[0]
    assert (asset.metadata["steps"], asset.metadata["guidance"]) == (1, 0.0)


def test_sdxl_turbo_family_with_two_text_encoders(backend, use_models, models_dir):
    use_models("tiny-sdxl-turbo")  # a folder name under the models dir
    events: list[tuple[float | None, str]] = []
    asset = backend.generate(ImageRequest(prompt="a neon city at night", width=96, height=64, seed=4), lambda f, m: events.append((f, m)))[0]
    md = asset.metadata
    assert (md["pipeline"], md["family"]) == ("StableDiffusionXLPipeline", "sdxl-turbo")
    assert (md["steps"], md["guidance"]) == (FAMILIES["sdxl-turbo"].steps, 0.0) == (1, 0.0)
    assert _image(asset).size == (96, 64)
    assert [m for f, m in events if f is not None] == ["denoising step 1/1"]


def test_one_pipeline_per_folder_loaded_once(backend, use_models, models_dir):
    use_models(str(models_dir / "tiny-sd"))
    first = backend.pipeline(models_dir / "tiny-sd")
    assert backend.pipeline(models_dir / "tiny-sd") is first
    assert first.load_seconds > 0 and first.multiple == 8 and first.native == 64


def test_concurrent_calls_from_two_threads_both_succeed(use_models, models_dir, caplog):
    use_models(str(models_dir / "tiny-sd"))
    fresh = DiffusersBackend()  # not loaded yet: both threads race for the lazy load
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def make(seed: int) -> None:
        try:
            results[seed] = fresh.generate(ImageRequest(prompt="a tea pot", width=64, height=64, seed=seed, steps=2))[0].data
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    with caplog.at_level(logging.INFO, logger="atelier.backends.diffusers"):
        threads = [threading.Thread(target=make, args=(seed,)) for seed in (11, 12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors and set(results) == {11, 12}
    assert sum("diffusers loaded" in r.getMessage() for r in caplog.records) == 1  # loaded once
    # serialised calls leave nothing behind: each equals the same seed made alone
    for seed, data in results.items():
        assert fresh.generate(ImageRequest(prompt="a tea pot", width=64, height=64, seed=seed, steps=2))[0].data == data


def test_speedups_run_on_the_cpu_and_keep_the_picture(use_models, models_dir, monkeypatch):
    """ATELIER_IMAGE_SPEEDUPS (off by default): channels_last and fused QKV projections load and run; the picture is
    the same one within rounding (both only change memory layout and how the same products are grouped). Speed is
    unmeasured on a GPU; torch.compile is not run here (minutes of compiling on two shared cores)."""
    import numpy as np

    from models.settings import reset_settings

    use_models(str(models_dir / "tiny-sd"))
    request = ImageRequest(prompt="a tea pot", width=64, height=64, seed=5, steps=2)
    plain = DiffusersBackend().generate(request)[0]
    assert plain.metadata["speedups"] == []
    monkeypatch.setenv("ATELIER_IMAGE_SPEEDUPS", "channels_last, fused_qkv")
    reset_settings()
    fast = DiffusersBackend().generate(request)[0]
    assert fast.metadata["speedups"] == ["channels_last", "fused_qkv"]
    a, b = (np.asarray(_image(x).convert("RGB"), dtype=np.int16) for x in (plain, fast))
    assert np.abs(a - b).max() <= 2
    monkeypatch.setenv("ATELIER_IMAGE_SPEEDUPS", "channels_last,warp_drive")
    reset_settings()
    with pytest.raises(BackendError, match="unknown warp_drive .known: channels_last, fused_qkv, compile"):
        DiffusersBackend().generate(request)


def test_warm_up_loads_the_image_pipeline_once_and_a_creation_waits_for_it(use_models, models_dir, monkeypatch, caplog):
    import tools.backends as backends
    from models.settings import reset_settings
    from tools.backends import load_backend, warm_up

    use_models(str(models_dir / "tiny-sd"))
    monkeypatch.setenv("ATELIER_IMAGE_BACKENDS", "diffusers,sketch")
    monkeypatch.setenv("ATELIER_MODEL_BACKENDS", "relief")
    reset_settings()
    monkeypatch.setattr(backends, "_warm_ups", {})
    monkeypatch.setattr(backends, "_instances", {})  # a fresh process: the registry's instance is not loaded yet
    with caplog.at_level(logging.INFO, logger="atelier.backends.diffusers"):
        entries = warm_up()
        assert list(entries) == ["diffusers:image"]
        events: list[str] = []
        asset = load_backend("diffusers", "image").generate(ImageRequest(prompt="a tea pot", width=64, height=64, seed=1, steps=1),
                                                            lambda f, m: events.append(m))[0]
        entries["diffusers:image"].thread.join(60)
    assert asset.backend == "diffusers" and entries["diffusers:image"].state == "ready"
    assert sum("diffusers loaded" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------- choosing the folder, and failing fast

def test_no_model_fails_fast_with_what_to_do(backend, use_models, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    use_models(None, root=empty)
    started = time.perf_counter()
    with pytest.raises(BackendError) as err:
        backend.generate(ImageRequest(prompt="a fox"))
    assert time.perf_counter() - started < 0.5
    reason = str(err.value)
    assert "no diffusers text-to-image pipeline" in reason and "model_index.json" in reason and "ATELIER_IMAGE_MODEL" in reason
    assert str(empty) in reason and err.value.transient is False


def test_two_models_and_none_chosen_lists_both(backend, use_models):
    use_models(None)
    with pytest.raises(BackendError) as err:
        backend.generate(ImageRequest(prompt="a fox"))
    reason = str(err.value)
    assert "2 diffusers pipelines" in reason and "tiny-sd" in reason and "tiny-sdxl-turbo" in reason
    assert "ATELIER_IMAGE_MODEL" in reason


def test_the_only_pipeline_in_models_is_used(backend, use_models, models_dir, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "tiny-sd").symlink_to(models_dir / "tiny-sd", target_is_directory=True)
    (root / "hunyuan3d-paint-v2-0").mkdir()  # a diffusers folder that is not text-to-image is not counted
    (root / "hunyuan3d-paint-v2-0" / "model_index.json").write_text(json.dumps({"_class_name": "HunyuanPaintPipeline"}))
    (root / "notes").mkdir()
    use_models(None, root=root)
    assert backend.generate(ImageRequest(prompt="a fox", width=64, height=64, seed=1, steps=1))[0].metadata["model"] == "tiny-sd"


def test_a_wrong_choice_says_what_is_there(backend, use_models, tmp_path):
    use_models("sd-turbo")
    with pytest.raises(BackendError) as err:
        backend.generate(ImageRequest(prompt="a fox"))
    assert "ATELIER_IMAGE_MODEL=sd-turbo" in str(err.value) and "tiny-sd, tiny-sdxl-turbo" in str(err.value)
    not_a_pipeline = tmp_path / "weights"
    not_a_pipeline.mkdir()
    use_models(str(not_a_pipeline))
    with pytest.raises(BackendError, match="has no model_index.json"):
        backend.generate(ImageRequest(prompt="a fox"))


def test_a_broken_folder_is_a_clear_non_transient_error(use_models, tmp_path):
    broken = tmp_path / "broken-sd"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    use_models(str(broken))
    with pytest.raises(BackendError) as err:
        DiffusersBackend().generate(ImageRequest(prompt="a fox", width=64, height=64))
    assert "could not load the diffusers pipeline" in str(err.value) and str(broken) in str(err.value)
    assert err.value.transient is False


@pytest.mark.parametrize("change,message", [
    ({"width": 50}, "width must be an integer between 64 and 2048"),
    ({"height": 4096}, "height must be an integer between 64 and 2048"),
    ({"prompt": "  "}, "the prompt is empty"),
    ({"steps": 0}, "steps must be an integer between 1 and 200"),
    ({"guidance": -1.0}, "guidance must be a number between 0 and 30"),
    ({"seed": -5}, "seed must be an integer"),
])
def test_bad_requests_are_refused_before_anything_loads(change, message):
    fresh = DiffusersBackend()
    with pytest.raises(BackendError, match=message) as err:
        fresh.generate(ImageRequest(**{"prompt": "a fox", **change}))
    assert err.value.transient is False and fresh._loaded is None


def test_without_a_model_the_fallback_costs_nothing_and_keeps_the_reason(tmp_path):
    # A fresh process, so "was diffusers imported?" is a real question.
    empty = tmp_path / "models"
    empty.mkdir()
    code = ("import json, sys\n"
            "from tools.backends import generate_with_fallback\n"
            "from tools.backends.base import ImageRequest\n"
            "for _ in range(2):  # the first attempt also imports the backend module (settings, PIL): ~0.2 s\n"
            "    assets, attempts = generate_with_fallback('image', ['diffusers', 'sketch'], ImageRequest(prompt='a fox', width=64, height=64))\n"
            "print(json.dumps({'backend': assets[0].backend, 'attempts': [a.__dict__ for a in attempts],\n"
            "                  'imported': [m for m in ('diffusers', 'torch') if m in sys.modules]}))\n")
    env = cli_env(tmp_path / "data", ATELIER_MODELS_DIR=str(empty))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["backend"] == "sketch" and report["imported"] == []
    diffusers_attempt = report["attempts"][0]
    assert diffusers_attempt["backend"] == "diffusers" and diffusers_attempt["ok"] is False
    assert diffusers_attempt["seconds"] < 0.1 and "no diffusers text-to-image pipeline" in diffusers_attempt["reason"]


def test_the_default_order_tries_diffusers_between_openfabric_and_sketch(monkeypatch):
    from tools.settings import ToolSettings

    monkeypatch.delenv("ATELIER_IMAGE_BACKENDS", raising=False)
    assert ToolSettings(_env_file=None).image_backend_list == ["openfabric", "diffusers", "sketch"]


# ---------------------------------------------------------------- family table, size rounding (JSON / arithmetic only)

def _pipeline_folder(root: Path, name: str, class_name: str, scheduler: dict | None = None, transformer: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    for sub, config, file in (("scheduler", scheduler, "scheduler_config.json"), ("transformer", transformer, "config.json")):
        if config is not None:
            (folder / sub).mkdir()
            (folder / sub / file).write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name,class_name,scheduler,transformer,family", [
    ("sd-turbo", "StableDiffusionPipeline", {"timestep_spacing": "trailing"}, None, "sd-turbo"),
    ("stable-diffusion-v1-5", "StableDiffusionPipeline", {"timestep_spacing": "leading"}, None, "sd"),
    ("my-distilled-sdxl", "StableDiffusionXLPipeline", {"timestep_spacing": "trailing"}, None, "sdxl-turbo"),
    ("sdxl-base-1.0", "StableDiffusionXLPipeline", {"timestep_spacing": "leading"}, None, "sdxl"),
    ("FLUX.1-schnell", "FluxPipeline", None, {"guidance_embeds": False}, "flux-schnell"),
    ("flux-local", "FluxPipeline", None, {"guidance_embeds": False}, "flux-schnell"),
    ("FLUX.1-dev", "FluxPipeline", None, {"guidance_embeds": True}, "flux-dev"),
    ("Sana_Sprint_1.6B_1024px", "SanaSprintPipeline", None, None, "sana-sprint"),
    ("stable-diffusion-3.5-medium", "StableDiffusion3Pipeline", None, None, "sd3"),
    ("kandinsky", "KandinskyV22CombinedPipeline", None, None, "other"),
])
def test_family_is_read_from_the_pipeline_class_and_folder(tmp_path, name, class_name, scheduler, transformer, family):
    assert detect_family(_pipeline_folder(tmp_path, name, class_name, scheduler, transformer)) == (class_name, FAMILIES[family])


def test_family_defaults_match_what_the_models_were_made_for():
    assert (FAMILIES["sd-turbo"].steps, FAMILIES["sd-turbo"].guidance) == (1, 0.0)
    assert (FAMILIES["flux-schnell"].steps, FAMILIES["flux-schnell"].guidance, FAMILIES["flux-schnell"].max_sequence_length) == (4, 0.0, 256)
    assert FAMILIES["sana-sprint"].steps == 2 and FAMILIES["flux-schnell"].cuda_dtype == "bfloat16"
    assert (FAMILIES["sd"].steps, FAMILIES["sd"].guidance, FAMILIES["sdxl"].steps, FAMILIES["sdxl"].guidance) == (25, 7.5, 30, 5.0)


@pytest.mark.parametrize("size,native,multiple,expected", [
    ((512, 512), 512, 8, (512, 512)),
    ((100, 75), 64, 8, (104, 80)),
    ((512, 512), 1024, 16, (1024, 1024)),     # SDXL / FLUX at 512²: rendered at native, scaled down after
    ((640, 384), 512, 8, (640, 384)),
    ((1000, 1000), 1024, 16, (1008, 1008)),
    ((64, 64), None, 32, (64, 64)),
])
def test_render_size(size, native, multiple, expected):
    assert render_size(*size, native, multiple) == expected


# ---------------------------------------------------------------- GPU placement (no GPU here: a narrow fake of torch.cuda)

class _RecordingPipeline:
    """Stands in for a loaded pipeline in the placement decision only: real modules, recorded method calls."""

    def __init__(self, modules: dict):
        import types

        self.components, self.calls = modules, []
        self.vae = types.SimpleNamespace(enable_tiling=lambda: self.calls.append("vae_tiling"))

    def to(self, device):
        self.calls.append(f"to:{device}")

    def enable_model_cpu_offload(self):
        self.calls.append("model_cpu_offload")

    def enable_attention_slicing(self):
        self.calls.append("attention_slicing")


@pytest.mark.parametrize("free_extra,placement,calls", [
    (10 * 2 ** 30, "gpu", ["to:cuda"]),  # plenty of room
    (6_000_000, "model_cpu_offload", ["model_cpu_offload"]),  # not all 8 MB of weights + headroom, the largest 4 MB does
    (-2 ** 28, "model_cpu_offload+attention_slicing", ["model_cpu_offload", "attention_slicing", "vae_tiling"]),
])
def test_placement_follows_free_vram(free_extra, placement, calls):
    import types

    import torch

    from tools.backends.diffusers import GIB, _place

    pipe = _RecordingPipeline({"unet": torch.nn.Linear(1000, 1000), "text_encoder": torch.nn.Linear(1000, 1000), "scheduler": object()})
    free = int(1.5 * GIB) + free_extra  # headroom for activations is max(1.5 GiB, a quarter of the weights)
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True, mem_get_info=lambda: (free, 80 * GIB)))
    assert _place(pipe, fake_torch) == placement
    assert pipe.calls == calls


def test_out_of_gpu_memory_turns_on_slicing_and_retries_once():
    import types

    import torch

    from tools.backends.diffusers import LoadedPipeline

    class OutOfMemoryUntilSliced:
        def __init__(self):
            self.calls, self.sliced, self.vae = 0, False, None

        def enable_attention_slicing(self):
            self.sliced = True

        def __call__(self, prompt, generator, **kwargs):
            noise = torch.randn(4, generator=generator)  # what a denoising loop draws before running out of memory
            self.calls += 1
            if not self.sliced:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return types.SimpleNamespace(images=[(prompt, noise)])

    pipe = OutOfMemoryUntilSliced()
    loaded = LoadedPipeline(folder=Path("sdxl-turbo"), pipe=pipe, class_name="StableDiffusionXLPipeline", family=FAMILIES["sdxl-turbo"],
                            device="cuda", dtype="float16", placement="gpu", native=512, multiple=8,
                            call_parameters=frozenset(), load_seconds=1.0)
    backend = DiffusersBackend()
    prompt, noise = backend._call(loaded, "a fox", {"generator": torch.Generator().manual_seed(5)})
    assert prompt == "a fox" and torch.equal(noise, torch.randn(4, generator=torch.Generator().manual_seed(5)))  # seeded again
    assert pipe.calls == 2 and loaded.placement == "gpu+attention_slicing"
    pipe.sliced = False  # already sliced and still out of memory: the error goes up (generate() makes it a BackendError)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        backend._call(loaded, "a fox", {"generator": torch.Generator().manual_seed(5)})


# ---------------------------------------------------------------- end to end through the CLI

def test_cli_shows_denoising_progress_as_a_bar(backend, use_models, models_dir, capsys):
    from agent.cli import _EventPrinter

    use_models(str(models_dir / "tiny-sd"))
    printer = _EventPrinter()
    printer({"event": "step_start", "tool": "text_to_image"})
    backend.generate(ImageRequest(prompt="a kite", width=64, height=64, seed=1, steps=4),
                     lambda f, m: printer({"event": "progress", "tool": "text_to_image", "fraction": f, "message": m}))
    printer({"event": "step_end", "tool": "text_to_image", "backend": "diffusers", "seconds": 1.0})
    err = capsys.readouterr().err
    assert err.startswith("→ text_to_image …\n")
    assert "100% |" in err and "denoising step 4/4" in err and "\r" in err  # one bar redrawn in place
    assert err.count("denoising step") >= 4 and "\n   100%" not in err
    assert err.rstrip().endswith("✓ text_to_image (diffusers, 1.00s)")


def test_denoising_progress_reaches_the_graph_stream(models_dir, data_dir, monkeypatch):
    """The events the studio's step (ui/runner.py) and the CLI consume: text_to_image progress, one per step."""
    from agent.cli import run_turn
    from agent.graph import build_graph
    from memory.session import checkpointer
    from models.settings import reset_settings
    from ui import views

    monkeypatch.setenv("ATELIER_IMAGE_MODEL", str(models_dir / "tiny-sd"))
    reset_settings()
    events: list[dict] = []
    config = {"configurable": {"thread_id": "t-diffusers", "user_id": "u", "image_backends": ["diffusers"], "enhance": False,
                               "auto_3d": False, "decision_policy": "router", "width": 64, "height": 64, "steps": 3, "seed": 5}}
    result = run_turn(build_graph(checkpointer=checkpointer()), "a brass telescope", config, on_event=events.append)
    assert result["state"]["image"]["backend"] == "diffusers"
    progress = [e for e in events if e.get("event") == "progress" and e.get("fraction") is not None]
    assert [(e["tool"], views.progress_line(e)) for e in progress] == [
        ("text_to_image", "33% · denoising step 1/3"), ("text_to_image", "67% · denoising step 2/3"),
        ("text_to_image", "100% · denoising step 3/3")]


def test_atelier_create_uses_diffusers_and_makes_3d_from_its_picture(distilled_sd, tmp_path, monkeypatch):
    data = tmp_path / "data"
    env = cli_env(data, ATELIER_IMAGE_BACKENDS="openfabric,diffusers,sketch", ATELIER_IMAGE_MODEL=str(distilled_sd),
                  ATELIER_MODELS_DIR=str(tmp_path / "no-models"))
    argv = [sys.executable, "-m", "agent.cli", "create", "a red fox sitting in the snow", "--json", "--no-enhance",
            "--policy", "router", "--size", "128x96", "--seed", "7"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["backends"]["image"] == "diffusers"
    assert report["tool_calls"] == ["text_to_image", "image_to_3d"]
    image = Path(report["image"])
    assert Image.open(image).size == (128, 96)
    assert Image.open(image).text.get("atelier:generator") == "diffusers:StableDiffusionPipeline"
    assert report["fallbacks"][0]["backend"] == "openfabric"  # tried first, as the default order says
    assert Path(report["model"]).read_bytes()[:4] == b"glTF" and report["backends"]["model"] == "relief"
    # the 3D step ran on this picture: the model belongs to the same creation as the image
    from memory.store import MemoryStore
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_DATA_DIR", str(data))
    reset_settings()
    try:
        view = MemoryStore().get(report["creation_id"], user_id="local")
        assert view.image.path == str(image) and view.model.path == report["model"]
        assert view.image.backend == "diffusers" and view.image.meta["seed"] == 7
        assert (view.image.meta["family"], view.image.meta["steps"]) == ("sd-turbo", 1)
    finally:
        reset_settings()
