"""Settings of the tools layer: which backends make images and 3D models, in what order, and how the learned
mesh backend is tuned (models/settings.py says how layers own their settings; the Openfabric client's own
connection settings are tools/openfabric/config.py, prefix ATELIER_OPENFABRIC_)."""
from __future__ import annotations

import re

from pydantic import Field, ValidationError, field_validator

from models.settings import LayerSettings, cached, settings_error

BACKEND_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def split_names(value: str | list[str]) -> list[str]:
    """'a, b,,c' → ['a', 'b', 'c']: the comma-separated backend lists of the environment and of a run's config."""
    items = value.split(",") if isinstance(value, str) else value
    return [b.strip() for b in items if b and b.strip()]


class ToolSettings(LayerSettings):
    image_backends: str = Field("openfabric,diffusers,sketch", description="Comma-separated text->image backends, tried in order.")
    model_backends: str = Field("openfabric,hunyuan3d,relief", description="Comma-separated image->3D backends, tried in order "
                                "(hunyuan3d is skipped in milliseconds when no mesh model is in models_dir).")
    text_to_image_app: str = Field("f0997a01-d6d3-a5fe-53d8-561300318557", description="Openfabric text-to-image app id or URL.")
    image_to_3d_app: str = Field("69543f29-4d41-4afc-7f29-3d51591f11eb", description="Openfabric image-to-3D app id or URL.")
    # Learned image -> 3D (tools/backends/hunyuan3d.py; docs/local-generation.md)
    mesh_max_faces: int = Field(40000, ge=500, description="Face budget of a learned mesh; larger meshes are simplified to it.")
    mesh_steps: int | None = Field(None, ge=1, le=200, description="Diffusion steps; default from the variant (turbo 5, else 30).")
    mesh_octree_resolution: int | None = Field(None, ge=16, le=1024, description="Marching-cubes grid; default 256 on CUDA, "
                                               "128 on CPU.")
    mesh_num_chunks: int | None = Field(None, ge=1000, description="Query points per decoder call; default from the variant.")
    image_speedups: str = Field("", description="Comma-separated speed-ups for the diffusers backend: channels_last, "
                                "fused_qkv, compile (torch.compile of the denoiser, compiled at load by one warm-up call). "
                                "Off by default: none is measured faster on a GPU yet (docs/local-generation.md).")
    warm_up: bool = Field(True, description="Load the local learned image and mesh pipelines in the background when "
                          "`atelier serve` / `atelier chat` start (only those with a model in models_dir).")

    @field_validator("image_backends", "model_backends")
    @classmethod
    def _backend_names_in_form(cls, value: str) -> str:
        names = split_names(value)
        if not names:
            raise ValueError("names no backend (a comma-separated list such as openfabric,sketch)")
        bad = [n for n in names if not BACKEND_NAME_RE.match(n)]
        if bad:
            raise ValueError(f"{bad[0][:60]!r} is not a backend name (letters, digits, _ . -)")
        return value

    @field_validator("text_to_image_app", "image_to_3d_app")
    @classmethod
    def _app_in_form(cls, value: str) -> str:
        from tools.openfabric.config import resolve_app

        resolve_app(value)  # ValueError: "cannot read Openfabric app ...: expected an app id, a host or a base URL"
        return value

    @property
    def image_backend_list(self) -> list[str]:
        return split_names(self.image_backends)

    @property
    def model_backend_list(self) -> list[str]:
        return split_names(self.model_backends)

    @property
    def image_speedup_list(self) -> list[str]:
        return split_names(self.image_speedups)


get_settings = cached(ToolSettings)


class SettingsProblem(ValueError):
    """A setting that is wrong in form or names something that does not exist: one line naming the variable."""


def check_settings(backends: bool = True) -> None:
    """Read every layer's settings up to this one and (with `backends`) check the backend lists against the backends
    registered now (built-ins and plugins' entry points: a plugin adds names, so this is checked at start, not at
    import; it imports the listed backends' modules, so commands that make nothing skip it).
    Raises SettingsProblem with one line naming the variable; entry points (the CLI, servers) call it at start."""
    from memory.settings import MemorySettings
    from models.settings import ModelSettings
    from tools.openfabric.config import OpenfabricSettings

    for cls in (ModelSettings, MemorySettings, ToolSettings, OpenfabricSettings):
        try:
            cls()
        except ValidationError as exc:
            raise SettingsProblem(settings_error(cls, exc)) from None
    if not backends:
        return
    settings = get_settings()
    from tools.backends import BackendError, UnknownBackendError, backend_info

    for field, kind, names in (("image_backends", "image", settings.image_backend_list), ("model_backends", "model", settings.model_backend_list)):
        variable = f"ATELIER_{field.upper()}"
        for name in names:
            try:
                info = backend_info(name)
            except UnknownBackendError as exc:
                raise SettingsProblem(f"{variable}: {exc}") from None
            except BackendError:
                continue  # registered but broken (an optional dependency missing): the run says why and falls back
            if kind not in info.kinds:
                raise SettingsProblem(f"{variable}: backend '{name}' does not make {kind}s (it makes {', '.join(info.kinds)})")
