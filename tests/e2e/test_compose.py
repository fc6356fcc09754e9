"""docker-compose.yml and docker/: validated with the Debian docker-compose package (`docker-compose config -q`,
no container engine needed) and checked for the deployment shape the issue asks for."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
SERVICES = {"llm-service", "memory-service", "db-service", "api-service", "ui-service"}

pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed (apt-get install docker-compose)")


GPU_OVERRIDE = ROOT / "docker-compose.gpu.yml"


def compose(*args: str, env: dict | None = None, gpu: bool = False) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ATELIER_", "LLM_", "POSTGRES_", "COMPOSE_", "TORCH_"))}
    files = ["-f", str(ROOT / "docker-compose.yml")] + (["-f", str(GPU_OVERRIDE)] if gpu else [])
    return subprocess.run([COMPOSE, *files, "--project-directory", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60, env={**clean, **(env or {})}, cwd=ROOT)


def _config(gpu: bool) -> dict:
    result = compose("--profile", "scale", "config", gpu=gpu)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return _config(gpu=False)


@pytest.fixture(scope="module")
def gpu_config() -> dict:
    return _config(gpu=True)


def test_compose_file_is_valid():
    for gpu in (False, True):
        for args in (("config", "-q"), ("--profile", "scale", "config", "-q")):
            result = compose(*args, gpu=gpu)
            assert result.returncode == 0, result.stderr
    # Overrides from the environment still give a valid file.
    result = compose("config", "-q", env={"ATELIER_API_PORT": "3024", "LLM_MODEL": "/models/llama.gguf", "POSTGRES_PASSWORD": "s3cret"})
    assert result.returncode == 0, result.stderr


def test_services_and_their_wiring(config):
    services = config["services"]
    assert SERVICES <= set(services)
    for name in SERVICES | {"redis-service", "api-scaled"}:
        assert "healthcheck" in services[name], f"{name} has no health check"
    env = services["api-service"]["environment"]
    assert env["ATELIER_LLM_URL"] == "http://llm-service:8000/v1"
    assert env["ATELIER_CHROMA_URL"] == "http://memory-service:8000"
    assert env["ATELIER_DATABASE_URL"].startswith("postgresql+psycopg://atelier:") and "@db-service:5432/atelier" in env["ATELIER_DATABASE_URL"]
    assert env["ATELIER_DATA_DIR"] == "/data"
    assert {d: c["condition"] for d, c in services["api-service"]["depends_on"].items()} == {
        "llm-service": "service_healthy", "memory-service": "service_healthy", "db-service": "service_healthy"}
    # The studio is api-service's client (one thread store per deployment) and waits for it.
    assert services["ui-service"]["environment"]["ATELIER_API_URL"] == "http://api-service:2024"
    assert services["ui-service"]["environment"]["ATELIER_DATA_DIR"] == "/data"
    assert {d: c["condition"] for d, c in services["ui-service"]["depends_on"].items()} == {"api-service": "service_healthy"}
    assert "2024:2024" in str(services["api-service"]["ports"]) or services["api-service"]["ports"][0]["target"] == 2024
    assert services["api-service"]["command"] == ["api"] and services["ui-service"]["command"] == ["ui"]
    scaled = services["api-scaled"]
    assert scaled["profiles"] == ["scale"] and scaled["deploy"]["replicas"] >= 2
    assert scaled["environment"]["DATABASE_URI"].startswith("postgres://") and scaled["environment"]["REDIS_URI"].startswith("redis://redis-service")
    assert {"LANGSMITH_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY"} <= set(scaled["environment"])


def _mounts(service: dict) -> dict[str, str]:
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out[target] = source
    return out


def test_volumes_for_models_and_data(config):
    services = config["services"]
    assert _mounts(services["llm-service"])["/models"] == str(ROOT / "models")
    for name in ("api-service", "ui-service"):
        assert _mounts(services[name])["/data"] == str(ROOT / "data")
    assert _mounts(services["db-service"])["/var/lib/postgresql/data"] == "pgdata"
    assert _mounts(services["memory-service"])["/chroma"] == "chroma"


def test_cpu_host_by_default_gpu_only_where_used_with_the_override(config, gpu_config):
    """The plain file starts on a CPU-only host; the override reserves a GPU for the services that use one."""
    for name, service in config["services"].items():
        assert "resources" not in service.get("deploy", {}), f"{name} reserves a device without the GPU override"
    assert config["services"]["llm-service"]["build"]["target"] == "cpu"
    assert config["services"]["llm-service"]["environment"]["LLM_N_GPU_LAYERS"] == "0"
    for name in ("api-service", "ui-service"):
        assert config["services"][name]["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
    gpu_users = {"llm-service", "api-service", "api-scaled"}  # ui-service is a client: no generator runs there
    for name, service in gpu_config["services"].items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if name in gpu_users:
            assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], name
        else:
            assert devices is None, f"{name} uses no GPU but reserves one"
    assert gpu_config["services"]["llm-service"]["build"]["target"] == "cuda"
    assert gpu_config["services"]["llm-service"]["environment"]["LLM_N_GPU_LAYERS"] == "-1"
    assert "/whl/cu" in gpu_config["services"]["api-service"]["build"]["args"]["TORCH_INDEX"]
    assert gpu_config["services"]["ui-service"]["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")
    env = gpu_config["services"]["api-service"]["environment"]
    assert env["ATELIER_MODELS_DIR"] == "/models" and "diffusers" in env["ATELIER_IMAGE_BACKENDS"]
    assert gpu_config["services"]["api-scaled"]["deploy"]["replicas"] >= 2  # the override keeps the replica count


def test_dockerfiles_exist_and_copy_what_exists(config):
    for name, service in config["services"].items():
        if "build" not in service:
            continue
        dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
        assert dockerfile.is_file(), name
        text = dockerfile.read_text()
        if target := service["build"].get("target"):
            assert re.search(rf"^FROM .* AS {target}$", text, re.M), f"{dockerfile.name} has no target {target}"
        for line in re.findall(r"^(?:COPY|ADD)\s+(?!--from)(.+)$", text, re.M):
            for source in line.split()[:-1]:
                if not source.startswith("--"):
                    assert (ROOT / source).exists(), f"{dockerfile.name}: {source} does not exist"
    llm = (ROOT / "docker" / "llm.Dockerfile").read_text()
    assert "DGGML_CUDA=on" in llm and "llama-cpp-python[server]" in llm and "nvidia/cuda" in llm
    assert re.search(r"^FROM .* AS cpu$", llm, re.M) and re.search(r"^FROM nvidia/cuda.* AS cuda$", llm, re.M)


def test_entrypoints_are_valid_shell():
    for script in ("entrypoint.sh", "llm-entrypoint.sh"):
        path = ROOT / "docker" / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0


def test_llm_entrypoint_picks_a_model(tmp_path):
    """No GGUF in the models dir: the packaged one; two: a clear error asking for LLM_MODEL."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = -c ]; then exec {sys.executable} \"$@\"; fi\necho \"SERVE $*\"\n")
    fake.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLM_")}, "LLM_PYTHON": str(fake),
           "LLM_MODELS_DIR": str(tmp_path / "models")}
    (tmp_path / "models").mkdir()
    script = str(ROOT / "docker" / "llm-entrypoint.sh")
    out = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
    # No LLM_CHAT_FORMAT: no --chat_format, so llama_cpp.server uses the GGUF's own template.
    assert out.returncode == 0 and "SmolLM2-135M-Instruct.Q4_1.gguf" in out.stdout and "--chat_format" not in out.stdout
    assert "chat format from the GGUF" in out.stderr
    out = subprocess.run(["sh", script], env={**env, "LLM_CHAT_FORMAT": ""}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--chat_format" not in out.stdout  # compose passes an empty value when unset
    out = subprocess.run(["sh", script], env={**env, "LLM_CHAT_FORMAT": "chatml-function-calling"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split()[-2:] == ["--chat_format", "chatml-function-calling"], out.stdout
    (tmp_path / "models" / "a.gguf").write_bytes(b"GGUF")
    out = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"--model {tmp_path}/models/a.gguf" in out.stdout and "--n_gpu_layers -1" in out.stdout
    (tmp_path / "models" / "b.gguf").write_bytes(b"GGUF")
    out = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "set LLM_MODEL" in out.stderr


def test_langgraph_config_and_generated_dockerfile_are_current(tmp_path):
    langgraph = Path(sys.executable).parent / "langgraph"
    result = subprocess.run([str(langgraph), "validate", "-c", str(ROOT / "langgraph.json")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "is valid" in result.stdout, result.stdout + result.stderr
    out = tmp_path / "Dockerfile"
    subprocess.run([str(langgraph), "dockerfile", "-c", str(ROOT / "langgraph.json"), str(out)], capture_output=True, timeout=60, check=True)
    committed = (ROOT / "docker" / "langgraph-api.Dockerfile").read_text()
    body = "\n".join(line for line in committed.splitlines() if not line.startswith("# Generated") and not line.startswith("# the LangGraph")
                     and not line.startswith("# builds the same")).strip()
    generated = out.read_text().strip().replace(f"/deps/{ROOT.name}", "/deps/main")
    assert body == generated, "docker/langgraph-api.Dockerfile is stale: regenerate it (see its header)"


# -- every variable the deployment names is one the code reads -----------------------------------------------
SETTINGS_MODULES = ("models.settings", "memory.settings", "tools.settings", "agent.settings", "ui.settings", "tools.openfabric.config")
CODE_DIRS = ("agent", "tools", "memory", "models", "ui", "tests", "benchmarks")


def variables_the_code_reads() -> set[str]:
    """Every settings class's variables (prefix + field, or its aliases), and ATELIER_ names the code quotes."""
    import importlib

    from pydantic_settings import BaseSettings

    names: set[str] = set()
    for module in SETTINGS_MODULES:
        for obj in vars(importlib.import_module(module)).values():
            if not (isinstance(obj, type) and issubclass(obj, BaseSettings)) or obj is BaseSettings:
                continue
            prefix = obj.model_config.get("env_prefix", "")
            for field_name, field in obj.model_fields.items():
                alias = field.validation_alias
                choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
                names.update(c.upper() for c in choices if isinstance(c, str))
                if not choices:
                    names.add(f"{prefix}{field_name}".upper())
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"""["'](ATELIER_[A-Z0-9_]+)["']""", path.read_text(errors="replace")))
    return names


def test_every_variable_named_is_read_by_the_code(config, gpu_config):
    known = variables_the_code_reads()
    assert {"ATELIER_LLM_URL", "ATELIER_API_STATE_DIR", "ATELIER_OPENFABRIC_TOKEN", "ATELIER_API_URL"} <= known  # the scan works
    # Passed into a container: the code in it must read it.
    for cfg in (config, gpu_config):
        for name, service in cfg["services"].items():
            passed = {k for k in (service.get("environment") or {}) if k.startswith("ATELIER_")}
            assert passed <= known, f"{name} is given {sorted(passed - known)}, which no code reads"
    # Named in docs/deployment.md: read by the code, or by compose / the entrypoints (ports, binds, replicas).
    shell = "".join(p.read_text() for p in [ROOT / "docker-compose.yml", GPU_OVERRIDE, *(ROOT / "docker").glob("*.sh")])
    named = set(re.findall(r"\b(ATELIER_[A-Z0-9_]*[A-Z0-9])\b", (ROOT / "docs" / "deployment.md").read_text()))
    unknown = {n for n in named if n not in known and not re.search(rf"\${{{n}\b|\${n}\b", shell)}
    assert not unknown, f"docs/deployment.md names {sorted(unknown)}, which neither the code nor compose reads"
