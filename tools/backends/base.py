"""The one small interface every generation backend implements.

A backend turns a request into assets (bytes + mime). It knows nothing about memory, the graph or the UI:
the tools layer stores what it returns and reports progress to the graph's stream.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Protocol

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


@dataclass
class GeneratedAsset:
    kind: Literal["image", "model", "video"]
    data: bytes
    mime: str
    backend: str
    # Anything worth keeping in the creation record: app id/version/manifest, seed, is_sketch, mesh stats ...
    metadata: dict[str, Any] = field(default_factory=dict)


class ImageBackend(Protocol):
    name: ClassVar[str]
    kind: ClassVar[Literal["image"]]

    def generate(self, request: ImageRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]: ...


class ModelBackend(Protocol):
    name: ClassVar[str]
    kind: ClassVar[Literal["model"]]

    def generate(self, request: MeshRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]: ...
