"""The one small interface every generation backend implements.

A backend turns a request into assets (bytes + mime). It knows nothing about memory, the graph or the UI:
the tools layer stores what it returns and reports progress to the graph's stream.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from memory.types import GeneratedAsset  # what backends return is what the memory layer keeps

# Held while a learned backend builds its torch modules from disk. accelerate's init_empty_weights (diffusers'
# low_cpu_mem_usage loading, transformers' from_pretrained) patches torch.nn.Module.register_parameter for the
# whole process while it builds a model, so a second model built at the same time in another thread gets meta
# parameters ("Cannot copy out of meta tensor", seen on an H200 when the warm-up loaded both pipelines at once).
# Only construction is serialised; imports, moves to the device and generation still overlap.
MODEL_BUILD_LOCK = threading.Lock()

__all__ = ["Backend", "BackendError", "GeneratedAsset", "ImageRequest", "MeshRequest", "ProgressFn", "no_progress"]

# progress(fraction 0..1 or None if unknown, human message)
ProgressFn = Callable[[float | None, str], None]


def no_progress(_fraction: float | None, _message: str) -> None:
    return None


class BackendError(RuntimeError):
    """A backend could not produce a result. `transient` errors are worth retrying / falling back on."""

    def __init__(self, message: str, *, transient: bool = True, backend: str = ""):
        super().__init__(message)
        self.transient = transient
        self.backend = backend


@dataclass
class ImageRequest:
    prompt: str
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None  # classifier-free guidance scale; None = the model family's default


@dataclass
class MeshRequest:
    image: bytes
    image_mime: str = "image/png"
    prompt: str | None = None
    seed: int | None = None


class Backend:
    """What a backend is and can do, as class attributes read without making an instance (or importing torch: keep
    heavy imports inside methods). Subclassing is optional — the registry reads these names from any class and
    falls back to the defaults here — but it documents the contract. The studio's settings panel and step labels,
    and the registry's kind check, all come from these attributes (tools/backends/__init__.py, docs/plugins.md)."""

    name: ClassVar[str]
    kind: ClassVar[str] = "image"  # "image" (ImageRequest -> images) or "model" (MeshRequest -> 3D models)
    kinds: ClassVar[tuple[str, ...]] = ()  # several kinds: one instance per kind, made as cls(kind=...); () = (kind,)
    label: ClassVar[str] = ""  # the studio's name for it ("the local sketch backend"); "" = "the <name> backend"
    labels: ClassVar[dict[str, str]] = {}  # per kind, for backends that make several ({"image": ..., "model": ...})
    supports_size: ClassVar[bool] = False  # honours ImageRequest.width / height
    supports_seed: ClassVar[bool] = False  # the same seed and prompt give the same result
    supports_steps: ClassVar[bool] = False  # honours ImageRequest.steps (sampling steps)
    supports_negative_prompt: ClassVar[bool] = False
    needs_gpu: ClassVar[bool] = False  # only sensible with a GPU (runs, slowly, without one)
    prefers_gpu: ClassVar[bool] = False  # uses a GPU when there is one; fine on a CPU
    learned: ClassVar[bool] = False  # a learned model (vs. a procedural placeholder such as sketch / relief)

    def generate(self, request: Any, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        raise NotImplementedError


class ImageBackend(Protocol):
    name: ClassVar[str]
    kind: ClassVar[Literal["image"]]

    def generate(self, request: ImageRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]: ...


class ModelBackend(Protocol):
    name: ClassVar[str]
    kind: ClassVar[Literal["model"]]

    def generate(self, request: MeshRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]: ...
