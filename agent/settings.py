"""Process-wide settings, read once from the environment and .env (pydantic-settings).

Per-run choices (user, decision policy, enhance on/off ...) live in agent/configuration.py instead;
these are the things an operator sets for a deployment.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root of all runtime data: database, assets, index, checkpoints.")
    log_level: str = Field("INFO", description="Logging level (DEBUG, INFO, WARNING, ERROR).")
    log_format: str = Field("text", description="'text' (key=value) or 'json' log lines.")

    # LLM
    llm_path: Path | None = Field(None, description="GGUF file for the in-process model; default: packaged SmolLM2-135M.")
    llm_url: str | None = Field(None, description="OpenAI-compatible llama.cpp server base URL (…/v1); used instead of in-process.")
    llm_n_ctx: int = 4096
    llm_n_gpu_layers: int = Field(0, description="Layers to offload to GPU (-1 = all) when llama.cpp has CUDA.")
    llm_threads: int | None = None

    # Decision policy default (auto | model | router | hybrid); auto = the model decides when its measured
    # accuracy (`atelier eval decisions`) is within 2 points of the router's, else the router (agent/calibration.py)
    decision_policy: str = "auto"

    # Backends, in fallback order
    image_backends: str = Field("openfabric,diffusers,sketch", description="Comma-separated text->image backends, tried in order.")
    model_backends: str = Field("openfabric,hunyuan3d,relief", description="Comma-separated image->3D backends, tried in order "
                                "(hunyuan3d is skipped in milliseconds when no mesh model is in models_dir).")
    text_to_image_app: str = "f0997a01-d6d3-a5fe-53d8-561300318557"
    image_to_3d_app: str = "69543f29-4d41-4afc-7f29-3d51591f11eb"

    # Memory
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under data_dir.")
    chroma_url: str | None = Field(None, description="Chroma server URL (http://host:port); default embedded PersistentClient.")
    embedding_model_path: Path | None = Field(None, description="sentence-transformers folder; default packaged MiniLM.")
    whisper_model_path: Path | None = Field(None, description="CTranslate2 Whisper folder; default packaged tiny.en.")
    whisper_model: str | None = Field(None, description="Whisper model: a CTranslate2 folder path, or a folder name under "
                                      "models_dir (base.en, small.en, distil-small.en ...); default packaged tiny.en.")
    voice_vocabulary: bool = Field(True, description="Bias Whisper toward the tool words and the user's own past prompts.")
    embedding_backend: str = Field("auto", description="auto | onnx | sentence-transformers; auto runs the ONNX export "
                                   "(made by `atelier setup`) when present, else sentence-transformers (torch).")
    embedding_onnx_path: Path | None = Field(None, description="ONNX export of the embedding model; default under ./models.")
    models_dir: Path = Field(Path("models"), description="Folder holding downloaded model folders (diffusers pipelines, mesh weights, GGUFs).")
    image_model: str | None = Field(None, description="diffusers text-to-image pipeline folder (with model_index.json): a path, or a "
                                    "folder name under models_dir; default: the only pipeline folder in models_dir.")
    # Learned image -> 3D (tools/backends/hunyuan3d.py; docs/local-generation.md)
    mesh_model: str | None = Field(None, description="Hunyuan3D-2 shape folder (config.yaml + model.fp16.safetensors): a path, or a "
                                   "folder name under models_dir; default: the only such folder in models_dir.")
    mesh_max_faces: int = Field(40000, ge=500, description="Face budget of a learned mesh; larger meshes are simplified to it.")
    mesh_steps: int | None = Field(None, ge=1, le=200, description="Diffusion steps; default from the variant (turbo 5, else 30).")
    mesh_octree_resolution: int | None = Field(None, ge=16, le=1024, description="Marching-cubes grid; default 256 on CUDA, "
                                               "128 on CPU.")
    mesh_num_chunks: int | None = Field(None, ge=1000, description="Query points per decoder call; default from the variant.")
    session_ttl_seconds: int = 3600

    max_idea_chars: int = 4000

    # The studio as a client (ui/runner.py, docs/ui.md "Client mode")
    api_url: str | None = Field(None, description="Base URL of `atelier serve` (http://host:2024): when set, the Chainlit "
                                "studio runs its threads on that LangGraph API server (RemoteGraph, X-Atelier-User = the "
                                "signed-in user) and shows its assets; unset, the studio runs the graph in-process.")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'atelier.db').resolve()}"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"

    @property
    def image_backend_list(self) -> list[str]:
        return [b.strip() for b in self.image_backends.split(",") if b.strip()]

    @property
    def model_backend_list(self) -> list[str]:
        return [b.strip() for b in self.model_backends.split(",") if b.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
