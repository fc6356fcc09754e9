"""Settings of the models layer, and the base every layer's settings class shares.

Each layer owns its settings (models → memory → tools → agent → ui; a layer may read the settings of the
layers below it): one pydantic-settings class per layer, prefix ATELIER_, read from the environment and .env,
every field described. Nothing else reads os.environ. `get_settings()` in each module caches one instance per
process; `reset_settings()` clears every layer's cache at once (tests that change the environment call it).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

from pydantic import AliasChoices, Field
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


get_settings = cached(ModelSettings)
