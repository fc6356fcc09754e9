"""Known models by name, and the only code in Atelier that downloads weights: `atelier models pull NAME`.

Nothing else reaches for a model hub. A pull is something the user asks for by name: it fetches just the files a
backend needs into ./models/<folder> (huggingface_hub for the file list, URLs and auth; a progress bar per file; a
stopped download resumes from its .part file with a Range request), then writes a
manifest (`.atelier-manifest.json`: repository, commit, every file's size and sha256) that `atelier models verify`
checks later. Offline, a pull fails at once with one clear line.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models.settings import get_settings

MANIFEST = ".atelier-manifest.json"


class CatalogueError(RuntimeError):
    """A pull or verify that cannot go on; the message is the one line the user sees."""


class UnknownModelError(CatalogueError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    role: str  # llm | image | mesh | speech
    repo_id: str
    files: tuple[str, ...]  # allow-patterns inside the repository: only what the backend loads
    size_gb: float  # approximate download size, for the README's disk budgets and `models list`
    licence: str
    summary: str
    folder: str = ""  # under ./models; default: the name
    accept_licence: bool = False  # the user must pass --accept-licence (the licence restricts who may use it)
    setting: str = ""  # the environment variable that selects it, for the hint printed after a pull

    @property
    def target(self) -> str:
        return self.folder or self.name


_SD_FILES = ("model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/config.json",
             "text_encoder/model.fp16.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
             "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors")

CATALOGUE: dict[str, CatalogueEntry] = {e.name: e for e in (
    CatalogueEntry("sd-turbo", "image", "stabilityai/sd-turbo", _SD_FILES, 2.6, "Stability AI Community",
                   "SD 2.1 distilled: 1-4 steps at 512x512; fits a 4 GB GPU, usable on CPU", setting="ATELIER_IMAGE_MODEL"),
    CatalogueEntry("sdxl-turbo", "image", "stabilityai/sdxl-turbo",
                   _SD_FILES + ("tokenizer_2/*", "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors"),
                   6.9, "Stability AI Community", "SDXL distilled: 1-4 steps at 512x512; 8 GB GPU",
                   setting="ATELIER_IMAGE_MODEL"),
    CatalogueEntry("flux-schnell", "image", "black-forest-labs/FLUX.1-schnell",
                   ("model_index.json", "scheduler/*", "tokenizer/*", "tokenizer_2/*", "text_encoder/*",
                    "text_encoder_2/*", "transformer/*", "vae/*"),
                   33.7, "Apache-2.0", "FLUX.1 schnell: 4 steps at 1024x1024; 24 GB GPU (CPU offload below that)",
                   setting="ATELIER_IMAGE_MODEL"),
    CatalogueEntry("hunyuan3d-2mini", "mesh", "tencent/Hunyuan3D-2mini",
                   # the DiT and, beside it, the FlashVDM-trained VAE the turbo variant decodes with
                   ("hunyuan3d-dit-v2-mini-turbo/*", "hunyuan3d-vae-v2-mini-turbo/*"),
                   2.3, "Tencent Hunyuan 3D Community (excludes the EU, the UK and South Korea)",
                   "Hunyuan3D-2 mini turbo shape (0.6B): image -> mesh in seconds on a GPU",
                   accept_licence=True, setting="ATELIER_MESH_MODEL"),
    CatalogueEntry("hunyuan3d-2", "mesh", "tencent/Hunyuan3D-2",
                   ("hunyuan3d-dit-v2-0-turbo/*", "hunyuan3d-vae-v2-0-turbo/*"),
                   4.9, "Tencent Hunyuan 3D Community (excludes the EU, the UK and South Korea)",
                   "Hunyuan3D-2.0 turbo shape (1.1B): finer shapes; 12 GB GPU", accept_licence=True,
                   setting="ATELIER_MESH_MODEL"),
    CatalogueEntry("qwen2.5-7b-instruct", "llm", "bartowski/Qwen2.5-7B-Instruct-GGUF", ("Qwen2.5-7B-Instruct-Q4_K_M.gguf",),
                   4.7, "Apache-2.0", "7B instruct GGUF Q4_K_M with a tool-calling chat template; 8 GB GPU or a patient CPU",
                   setting="ATELIER_LLM_PATH"),
    CatalogueEntry("llama-3.1-8b-instruct", "llm", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
                   ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",), 4.9, "Llama 3.1 Community",
                   "8B instruct GGUF Q4_K_M with a tool-calling chat template; 8 GB GPU", setting="ATELIER_LLM_PATH"),
    CatalogueEntry("qwen2.5-1.5b-instruct", "llm", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", ("qwen2.5-1.5b-instruct-q4_k_m.gguf",),
                   1.1, "Apache-2.0", "1.5B instruct GGUF: the step up from the packaged 135M model on a CPU box",
                   setting="ATELIER_LLM_PATH"),
    CatalogueEntry("whisper-base.en", "speech", "Systran/faster-whisper-base.en",
                   ("config.json", "model.bin", "tokenizer.json", "vocabulary.*"), 0.15, "MIT",
                   "Whisper base.en (CTranslate2): fewer mishearings than the packaged tiny.en, ~2x slower",
                   setting="ATELIER_WHISPER_MODEL"),
    CatalogueEntry("whisper-small.en", "speech", "Systran/faster-whisper-small.en",
                   ("config.json", "model.bin", "tokenizer.json", "vocabulary.*"), 0.48, "MIT",
                   "Whisper small.en (CTranslate2): accurate dictation; a GPU or a fast CPU",
                   setting="ATELIER_WHISPER_MODEL"),
    CatalogueEntry("distil-whisper-small.en", "speech", "Systran/faster-distil-whisper-small.en",
                   ("config.json", "model.bin", "tokenizer.json", "vocabulary.*", "preprocessor_config.json"), 0.33, "MIT",
                   "Distil-Whisper small.en (CTranslate2): close to small.en at about half its time",
                   setting="ATELIER_WHISPER_MODEL"),
)}


def entry(name: str) -> CatalogueEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownModelError(f"unknown model '{name}' (known: {', '.join(sorted(CATALOGUE))})") from None


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    # huggingface_hub keeps its partial downloads and locks under <folder>/.cache: not part of the model
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts)


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class PullResult:
    name: str
    path: str
    revision: str
    files: dict[str, dict] = field(default_factory=dict)  # relative path -> {size, sha256}
    seconds: float = 0.0
    downloaded_bytes: int = 0
    setting_hint: str = ""


def pull(name: str, models_dir: Path, *, accept_licence: bool = False, revision: str | None = None,
         endpoint: str | None = None, token: str | None = None, offline: bool = False,
         progress: Callable[[str], None] = lambda _msg: None) -> PullResult:
    """Download NAME's files into models_dir/<folder>; resumable, and a no-op for files already complete.

    `offline` is the user's own HF_HUB_OFFLINE=1 (not the default the CLI sets for every other command).
    """
    item = entry(name)
    if item.accept_licence and not accept_licence:
        raise CatalogueError(f"{name} is under the {item.licence} licence; read it at https://huggingface.co/{item.repo_id} "
                             f"and run again with --accept-licence if it allows your use")
    if offline:
        raise CatalogueError("HF_HUB_OFFLINE=1 is set; unset it to let `atelier models pull` download")
    # The CLI defaults HF_HUB_OFFLINE=1 for every other command; a pull is the one the user asked to go online.
    os.environ["HF_HUB_OFFLINE"] = "0"
    import huggingface_hub.constants as hub_constants

    hub_constants.HF_HUB_OFFLINE = False
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    target = models_dir.resolve() / item.target
    started = time.perf_counter()
    endpoint = endpoint or get_settings().hf_endpoint or None
    try:
        # The file list (with sizes and LFS sha256) first: offline or a wrong name fails here in seconds.
        info = HfApi(endpoint=endpoint, token=token).model_info(item.repo_id, revision=revision, files_metadata=True,
                                                                timeout=10)
        wanted = [s for s in info.siblings or [] if any(fnmatch.fnmatch(s.rfilename, pat) for pat in item.files)]
        if not wanted:
            raise CatalogueError(f"no files of {item.repo_id} match {', '.join(item.files)}")
        progress(f"pulling {name}: {len(wanted)} files from {item.repo_id}@{(info.sha or 'main')[:12]} into {target}")
        files, downloaded = {}, 0
        for sibling in wanted:
            record, fetched = _fetch_file(item.repo_id, info.sha or revision or "main", sibling, target, endpoint, token)
            files[sibling.rfilename] = record
            downloaded += fetched
    except GatedRepoError:
        raise CatalogueError(f"{item.repo_id} is gated: accept its licence on the hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise CatalogueError(f"{item.repo_id} was not found on the hub (or needs HF_TOKEN)") from None
    except HfHubHTTPError as exc:
        raise CatalogueError(f"the hub refused the download of {item.repo_id}: {str(exc).splitlines()[0]}") from None
    except CatalogueError:
        raise
    except Exception as exc:  # DNS, refused, reset, timeouts: httpx's errors, some wrapped in OSError
        if isinstance(exc, OSError) or exc.__class__.__module__.startswith(("httpx", "httpcore")):
            where = "a download stopped" if target.exists() else "cannot reach the model hub"
            raise CatalogueError(f"{where} ({exc.__class__.__name__}); `atelier models pull` needs the network — run it "
                                 f"again to resume, or copy the files of {item.repo_id} into {target}") from None
        raise
    manifest = {"name": name, "repo_id": item.repo_id, "revision": info.sha, "role": item.role,
                "licence": item.licence, "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))
    hint = ""
    if item.setting:
        value = target / item.files[0] if item.role == "llm" else target
        hint = f"{item.setting}={value}"
    return PullResult(name, str(target), info.sha or "", files, round(time.perf_counter() - started, 2), downloaded, hint)


def _fetch_file(repo_id: str, revision: str, sibling, target: Path, endpoint: str | None, token: str | None) -> tuple[dict, int]:
    """One file: skipped when complete, else downloaded to <file>.part, resumed from the part's size with a Range
    request (huggingface_hub itself restarts an interrupted file from zero), checked against the hub's size and
    sha256, then renamed into place. Returns the manifest record and the bytes fetched."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
    from tqdm import tqdm

    path = target / sibling.rfilename
    size = getattr(sibling, "size", None)
    lfs_sha = getattr(getattr(sibling, "lfs", None), "sha256", None)
    if path.is_file() and (size is None or path.stat().st_size == size):
        digest = sha256_file(path)
        if lfs_sha is None or digest == lfs_sha:
            return {"size": path.stat().st_size, "sha256": digest}, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    headers = build_hf_headers(token=token)
    if have:
        headers["Range"] = f"bytes={have}-"
    url = hf_hub_url(repo_id, sibling.rfilename, revision=revision, endpoint=endpoint)
    fetched = 0
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as response:
        hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server ignored the Range: start again
            have = 0
        with part.open("ab" if have else "wb") as out, tqdm(total=size, initial=have, unit="B", unit_scale=True,
                                                            desc=sibling.rfilename, file=sys.stderr, leave=False) as bar:
            for chunk in response.iter_bytes():  # as they arrive, so a cut keeps what came
                out.write(chunk)
                fetched += len(chunk)
                bar.update(len(chunk))
    if size is not None and part.stat().st_size != size:
        raise OSError(f"{sibling.rfilename}: got {part.stat().st_size} of {size} bytes")
    digest = sha256_file(part)
    if lfs_sha and digest != lfs_sha:
        part.unlink()  # corrupt, not resumable
        raise CatalogueError(f"{sibling.rfilename} does not match the hub's sha256; removed it — run the pull again")
    os.replace(part, path)
    return {"size": path.stat().st_size, "sha256": digest}, fetched


@dataclass
class VerifyResult:
    name: str
    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    files: int = 0


def verify_folder(folder: Path) -> VerifyResult:
    """Check a pulled folder against its manifest: every file present with its recorded size and sha256."""
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        return VerifyResult(folder.name, str(folder), False, [f"no readable {MANIFEST} ({exc.__class__.__name__})"])
    problems = []
    for rel, record in files.items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != record["size"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, expected {record['size']}")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{rel}: sha256 differs from the pulled file")
    return VerifyResult(manifest.get("name", folder.name), str(folder), not problems, problems, len(files))


def pulled_folders(models_dir: Path) -> list[Path]:
    return sorted(p.parent for p in models_dir.glob(f"*/{MANIFEST}"))


def as_dict(result) -> dict:
    return asdict(result)


# -- what is configured: `atelier models list` ----------------------------------------------------------------
# role -> (registry function, who uses it, what is used when it is absent)
ROLES: dict[str, tuple[str, str, str]] = {
    "llm": ("llm_path", "decide + enhance_prompt (llama.cpp)", "nothing: the packaged SmolLM2-135M is always there"),
    "image": ("image_model_path", "text_to_image backend 'diffusers'", "the 'sketch' backend (a labelled procedural picture)"),
    "mesh": ("mesh_model_path", "image_to_3d backend 'hunyuan3d'", "the 'relief' backend (a height-field mesh)"),
    "embeddings": ("embedding_model_path", "recall_similar + the index (MiniLM)", "nothing: packaged"),
    "speech": ("whisper_model_path", "transcribe + the studio's microphone (faster-whisper)", "nothing: packaged tiny.en"),
}


def inventory(models_dir: Path, llm_url: str | None = None) -> list[dict]:
    """One row per role: what is configured, where, how big, which backend uses it, present or not."""
    from models import registry

    rows = []
    for role, (fn_name, used_by, otherwise) in ROLES.items():
        row = {"role": role, "used_by": used_by, "present": False, "path": None, "size_bytes": 0, "note": ""}
        fn = getattr(registry, fn_name, None)
        try:
            path = fn() if fn else None
        except registry.ModelMissing as exc:
            row["note"] = str(exc) if role in ("llm", "embeddings", "speech") else f"{exc}; until then: {otherwise}"
        else:
            if path is not None:
                path = Path(path)
                row.update(present=path.exists(), path=str(path), size_bytes=folder_size(path) if path.exists() else 0)
            else:
                row["note"] = f"none configured or found in {models_dir}: uses {otherwise}"
        if role == "llm" and llm_url:
            row["note"] = f"served by {llm_url} (ATELIER_LLM_URL); the in-process model is not loaded"
        pulled = [f.name for f in pulled_folders(models_dir) if _manifest_role(f) == role]
        row["pulled"] = pulled
        rows.append(row)
    return rows


def _manifest_role(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST).read_text()).get("role")
    except (OSError, ValueError):
        return None
