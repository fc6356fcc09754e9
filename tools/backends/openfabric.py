"""Openfabric apps as a backend for both kinds: text -> image and image -> 3D model.

The apps are configured by ATELIER_TEXT_TO_IMAGE_APP / ATELIER_IMAGE_TO_3D_APP (an app id, a host or a
base URL such as http://127.0.0.1:8765 for a local node); client behaviour by ATELIER_OPENFABRIC_* - the
transport (auto | socket | sdk | rest), the token for locked apps, timeouts, retries (see
tools/openfabric/config.py and docs/openfabric.md). Request and response shapes are read from the
app at run time; nothing about its fields is hard-coded here.
"""
from __future__ import annotations

from typing import ClassVar

from tools.backends.base import Backend, BackendError, GeneratedAsset, ImageRequest, MeshRequest, ProgressFn, no_progress
from tools.openfabric.client import generate_sync
from tools.openfabric.config import get_openfabric_settings
from tools.openfabric.schema_mapping import ToolValues
from tools.settings import get_settings


class OpenfabricBackend(Backend):
    name: ClassVar[str] = "openfabric"
    kinds: ClassVar[tuple[str, ...]] = ("image", "model")
    kind: str = "image"  # per instance: the kind this instance makes
    labels: ClassVar[dict[str, str]] = {"image": "Openfabric text-to-image", "model": "Openfabric image-to-3D"}
    label: ClassVar[str] = "Openfabric"
    supports_size: ClassVar[bool] = True
    supports_seed: ClassVar[bool] = True
    supports_steps: ClassVar[bool] = True
    supports_negative_prompt: ClassVar[bool] = True
    learned: ClassVar[bool] = True  # remote apps run real models (the GPU is theirs, not ours)

    def __init__(self, kind: str = "image", app: str | None = None):
        if kind not in self.kinds:
            raise BackendError(f"openfabric backend does not make {kind}s", transient=False, backend=self.name)
        self.kind = kind
        self._app = app  # None: read from settings at each call, so a changed environment takes effect

    @property
    def app(self) -> str:
        if self._app:
            return self._app
        settings = get_settings()
        return settings.text_to_image_app if self.kind == "image" else settings.image_to_3d_app

    def generate(self, request: ImageRequest | MeshRequest, progress: ProgressFn = no_progress) -> list[GeneratedAsset]:
        if self.kind == "image":
            if not isinstance(request, ImageRequest):
                raise BackendError(f"openfabric image backend got a {type(request).__name__}", transient=False, backend=self.name)
            values = ToolValues(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed,
                                width=request.width, height=request.height, steps=request.steps)
            label = "openfabric text-to-image"
        else:
            if not isinstance(request, MeshRequest):
                raise BackendError(f"openfabric model backend got a {type(request).__name__}", transient=False, backend=self.name)
            values = ToolValues(image=request.image, image_mime=request.image_mime, prompt=request.prompt, seed=request.seed)
            label = "openfabric image-to-3d"
        return generate_sync(self.app, self.kind, values, progress, settings=get_openfabric_settings(), label=label)


def register_backends(register) -> None:
    register(OpenfabricBackend)
