"""`atelier models list / pull / verify` as a user runs them: real processes, the real huggingface_hub client,
a hub on loopback (tests/support/fake_hub.py) instead of the internet."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cli_env
from fake_hub import FakeHub

SD_TURBO_FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
    "scheduler/scheduler_config.json": b"{}",
    "tokenizer/vocab.json": b"{}",
    "unet/config.json": b"{}",
    "unet/diffusion_pytorch_model.fp16.safetensors": os.urandom(400_000),
    "unet/diffusion_pytorch_model.safetensors": os.urandom(5000),  # the fp32 copy: not in the catalogue's files
    "vae/config.json": b"{}",
    "vae/diffusion_pytorch_model.fp16.safetensors": os.urandom(50_000),
    "text_encoder/config.json": b"{}",
    "text_encoder/model.fp16.safetensors": os.urandom(80_000),
    "README.md": b"not needed",
}


def models(args, tmp_path, hub: FakeHub | None = None, timeout=120, **env):
    base = cli_env(tmp_path / "data", ATELIER_MODELS_DIR=str(tmp_path / "models"))
    base.pop("HF_HUB_OFFLINE", None)  # the user has not asked to be offline (unless env says so): pull may go online
    base.update(env)
    if hub:
        base["HF_ENDPOINT"] = hub.url
    return subprocess.run([sys.executable, "-m", "agent.cli", "models", *args], cwd=ROOT, env=base,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def hub():
    with FakeHub({"stabilityai/sd-turbo": dict(SD_TURBO_FILES)}) as fake:
        yield fake


def test_pull_fetches_only_the_files_the_backend_needs_then_verify(tmp_path, hub):
    out = models(["pull", "sd-turbo", "--json"], tmp_path, hub)
    assert out.returncode == 0, out.stderr.decode()
    result = json.loads(out.stdout)
    folder = tmp_path / "models" / "sd-turbo"
    assert result["path"] == str(folder.resolve())
    got = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts}
    wanted = {name for name in SD_TURBO_FILES if name not in ("README.md", "unet/diffusion_pytorch_model.safetensors")}
    assert got == wanted | {".atelier-manifest.json"}
    for name in wanted:
        assert (folder / name).read_bytes() == SD_TURBO_FILES[name]
    assert result["revision"] and set(result["files"]) == wanted
    assert not hub.file_gets("README.md")  # never asked for

    out = models(["verify", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    [checked] = json.loads(out.stdout)["results"]
    assert checked["ok"] and checked["files"] == len(wanted)

    # a second pull finds everything complete: no file is downloaded again
    before = len(hub.file_gets("unet/diffusion_pytorch_model.fp16.safetensors"))
    assert models(["pull", "sd-turbo"], tmp_path, hub).returncode == 0
    assert len(hub.file_gets("unet/diffusion_pytorch_model.fp16.safetensors")) == before

    # list names the pulled folder under its role
    rows = {r["role"]: r for r in json.loads(models(["list", "--json"], tmp_path).stdout)["roles"]}
    assert rows["image"]["pulled"] == ["sd-turbo"]
    assert rows["llm"]["present"] and rows["llm"]["size_bytes"] > 10_000_000  # the packaged GGUF


def test_verify_finds_a_changed_and_a_missing_file(tmp_path, hub):
    assert models(["pull", "sd-turbo"], tmp_path, hub).returncode == 0
    folder = tmp_path / "models" / "sd-turbo"
    weights = folder / "vae/diffusion_pytorch_model.fp16.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    (folder / "unet/config.json").unlink()
    out = models(["verify"], tmp_path)
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "BROKEN" in text and "vae/diffusion_pytorch_model.fp16.safetensors: sha256 differs" in text
    assert "unet/config.json: missing" in text


def test_an_interrupted_pull_resumes_where_it_stopped(tmp_path, hub):
    big = "unet/diffusion_pytorch_model.fp16.safetensors"
    hub.cuts[big] = 10  # every try of this run stops halfway: the pull fails
    first = models(["pull", "sd-turbo"], tmp_path, hub)
    assert first.returncode != 0 and "atelier: error:" in first.stderr.decode()
    assert not (tmp_path / "models" / "sd-turbo" / ".atelier-manifest.json").exists()
    hub.cuts[big] = 0
    tries = len(hub.file_gets(big))
    assert models(["pull", "sd-turbo"], tmp_path, hub).returncode == 0
    resumed = hub.file_gets(big)[tries:]
    assert resumed and resumed[0] and resumed[0].startswith("bytes=") and resumed[0] != "bytes=0-"  # only the rest
    folder = tmp_path / "models" / "sd-turbo"
    assert (folder / big).read_bytes() == SD_TURBO_FILES[big]
    assert models(["verify"], tmp_path).returncode == 0


def test_offline_fails_at_once_with_one_line_and_leaves_nothing(tmp_path):
    started = time.monotonic()
    out = models(["pull", "sd-turbo"], tmp_path, HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    assert out.returncode == 2 and time.monotonic() - started < 20
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot reach the model hub" in lines[0]
    assert not (tmp_path / "models" / "sd-turbo").exists()

    out = models(["pull", "sd-turbo"], tmp_path, HF_HUB_OFFLINE="1")
    assert out.returncode == 2 and "HF_HUB_OFFLINE=1 is set" in out.stderr.decode()


def test_licence_gate_unknown_names_and_list(tmp_path, hub):
    out = models(["pull", "hunyuan3d-2mini"], tmp_path, hub)
    assert out.returncode == 2 and "--accept-licence" in out.stderr.decode()
    assert not hub.requests  # refused before any network call
    out = models(["pull", "stable-dream"], tmp_path, hub)
    assert out.returncode == 2 and "unknown model 'stable-dream' (known: " in out.stderr.decode()
    out = models(["list", "--json", "--catalogue"], tmp_path)
    listing = json.loads(out.stdout)
    assert {r["role"] for r in listing["roles"]} == {"llm", "image", "mesh", "embeddings", "speech"}
    assert {"sd-turbo", "sdxl-turbo", "flux-schnell", "hunyuan3d-2mini", "whisper-base.en", "whisper-small.en"} <= {
        c["name"] for c in listing["catalogue"]}
    image = next(r for r in listing["roles"] if r["role"] == "image")
    assert not image["present"] and "sketch" in image["note"]


def test_pulled_fp16_pipeline_is_what_create_uses(tmp_path):
    """The whole user path: `models pull sd-turbo` (fp16 files only, as the catalogue asks) then `create` makes the
    picture with the diffusers backend from that folder, on CPU."""
    from diffusers import StableDiffusionPipeline

    from tiny_pipelines import save_tiny_sd

    plain = save_tiny_sd(tmp_path / "plain", turbo=True)
    fp16 = tmp_path / "fp16"
    StableDiffusionPipeline.from_pretrained(str(plain), local_files_only=True).save_pretrained(fp16, variant="fp16")
    files = {p.relative_to(fp16).as_posix(): p.read_bytes() for p in fp16.rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in files
    with FakeHub({"stabilityai/sd-turbo": files}) as fake:
        out = models(["pull", "sd-turbo"], tmp_path, fake)
        assert out.returncode == 0, out.stderr.decode()
    rows = {r["role"]: r for r in json.loads(models(["list", "--json"], tmp_path).stdout)["roles"]}
    assert rows["image"]["present"] and rows["image"]["path"].endswith("sd-turbo")

    env = cli_env(tmp_path / "data", ATELIER_MODELS_DIR=str(tmp_path / "models"),
                  ATELIER_IMAGE_BACKENDS="diffusers,sketch")
    out = subprocess.run([sys.executable, "-m", "agent.cli", "create", "a brass owl automaton", "--json", "--no-enhance",
                          "--no-3d", "--size", "64x64", "--seed", "7"], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["backends"]["image"] == "diffusers", report["fallbacks"]
