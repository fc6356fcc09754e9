"""Settings of the models layer, and the base every layer's settings class shares.

Each layer owns its settings (models → memory → tools → agent → ui; a layer may read the settings of the
layers below it): one pydantic-settings class per layer, prefix ATELIER_, read from the environment and .env,
every field described. Nothing else reads os.environ. `get_settings()` in each module caches one instance per
process; `reset_settings()` clears every layer's cache at once (tests that change the environment call it).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)
_caches: list = []


class LayerSettings(BaseSettings):
    """ATELIER_-prefixed, .env-aware, ignoring variables that belong to another layer."""
    model_config = SettingsConfigDict(env_prefix="ATELIER_", env_file=".env", extra="ignore")


def cached(cls: type[S]) -> Callable[[], S]:
    """A `get_settings()` for one layer: one instance per process, cleared by reset_settings()."""
    getter = lru_cache(maxsize=1)(lambda: cls())
    _caches.append(getter)
    return getter


def reset_settings() -> None:
    """Forget every layer's cached settings, so the next get_settings() reads the environment again."""
    for getter in _caches:
        getter.cache_clear()


def variable_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from (its alias, else prefix + name)."""
    info = cls.model_fields.get(field)
    aliases = getattr(getattr(info, "validation_alias", None), "choices", None) or []
    named = [a for a in aliases if isinstance(a, str)]
    return named[0] if named else f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def settings_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming the variable that is wrong and why ("ATELIER_LLM_URL: must be an http(s) URL ...")."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first.get("loc") else ""
    message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{variable_name(cls, field) if field else cls.__name__}: {message}{more}"


def check_url(value: str | None, example: str) -> str | None:
    """An http(s)://host[:port][/path] URL, or None/empty (unset); ValueError naming the expected form otherwise."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value)
            or parts.query or parts.fragment):
        raise ValueError(f"must be an http(s) URL such as {example}, not {value[:100]!r}")
    return value


class ModelSettings(LayerSettings):
    models_dir: Path = Field(Path("models"), description="Folder holding downloaded model folders (diffusers pipelines, "
                             "mesh weights, GGUFs, Whisper folders); relative paths are under the checkout.")
    # LLM (models/llm.py)
    llm_path: Path | None = Field(None, description="GGUF file for the in-process model; default: packaged SmolLM2-135M.")
    llm_url: str | None = Field(None, description="OpenAI-compatible llama.cpp server base URL (…/v1); used instead of in-process.")
    llm_n_ctx: int = Field(4096, ge=256, description="Context window of the in-process model, in tokens.")
    llm_n_gpu_layers: int = Field(0, description="Layers to offload to GPU (-1 = all) when llama.cpp has CUDA.")
    llm_threads: int | None = Field(None, ge=1, description="CPU threads for llama.cpp; default: llama.cpp's choice.")
    # Embeddings (memory/embeddings.py)
    embedding_model_path: Path | None = Field(None, description="sentence-transformers folder; default packaged MiniLM.")
    embedding_backend: str = Field("auto", description="auto | onnx | sentence-transformers; auto runs the ONNX export "
                                   "(made by `atelier setup`) when present, else sentence-transformers (torch).")
    embedding_onnx_path: Path | None = Field(None, description="ONNX export of the embedding model; default under ./models.")
    # Speech (agent/speech.py)
    whisper_model_path: Path | None = Field(None, description="CTranslate2 Whisper folder; default packaged tiny.en.")
    whisper_model: str | None = Field(None, description="Whisper model: a CTranslate2 folder path, or a folder name under "
                                      "models_dir (base.en, small.en, distil-small.en ...); default packaged tiny.en.")
    # Learned generators (tools/backends/diffusers.py, hunyuan3d.py; docs/local-generation.md)
    image_model: str | None = Field(None, description="diffusers text-to-image pipeline folder (with model_index.json): a path, or a "
                                    "folder name under models_dir; default: the only pipeline folder in models_dir.")
    mesh_model: str | None = Field(None, description="Hunyuan3D-2 shape folder (config.yaml + model.fp16.safetensors): a path, or a "
                                   "folder name under models_dir; default: the only such folder in models_dir.")
    # The model manager (`atelier models pull`, models/catalogue.py): huggingface_hub's own variables
    hf_endpoint: str | None = Field(None, validation_alias=AliasChoices("HF_ENDPOINT"),
                                    description="Hub mirror for `atelier models pull` (huggingface_hub's HF_ENDPOINT).")
    hf_token: str | None = Field(None, validation_alias=AliasChoices("HF_TOKEN"),
                                 description="Hub token for gated repositories (huggingface_hub's HF_TOKEN).")
    hf_hub_offline: bool = Field(False, validation_alias=AliasChoices("HF_HUB_OFFLINE"),
                                 description="The user's own HF_HUB_OFFLINE: `models pull` then fails at once instead of downloading.")

    @field_validator("llm_url")
    @classmethod
    def _llm_url_in_form(cls, value: str | None) -> str | None:
        return check_url(value, "http://127.0.0.1:8080/v1")


get_settings = cached(ModelSettings)
