"""A stand-in for the four `torchvision.transforms` that hy3dgen's image conditioner uses, in torch ops only.

Why it exists: `hy3dgen.shapegen.models.conditioner` does `from torchvision import transforms` for one
Compose(Resize(bilinear, antialias), CenterCrop, Normalize) chain, and torchvision has no wheel on PyPI that
imports on a CPU-only torch (PyPI's torchvision is built against CUDA torch). A real torchvision, where it
imports (a CUDA box), is always preferred: `conditioner_module()` only uses this stand-in when
`import torchvision` fails, and only while hy3dgen's conditioner module is being imported: the stand-in is
taken out of sys.modules again at once, so no other library ever sees a fake `torchvision`.

The maths follows torchvision's tensor path: Resize(int) scales the shorter side to `size` (the longer side is
int(size * long / short)) with `F.interpolate(..., align_corners=False, antialias=...)`, CenterCrop rounds the
offsets like torchvision (and zero-pads an image smaller than the crop), Normalize is (x - mean) / std per
channel. tests/integration/test_backend_hunyuan3d.py checks each against independent numbers (PIL's antialiased
bilinear resize, hand-computed crops and normalisation).
"""
from __future__ import annotations

import enum
import importlib
import importlib.machinery
import sys
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) == 1:
        return int(size[0]), int(size[0])
    return int(size[0]), int(size[1])


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    def __init__(self, size: int | Sequence[int], interpolation: InterpolationMode = InterpolationMode.BILINEAR,
                 max_size: int | None = None, antialias: bool | None = True):
        if max_size is not None:
            raise NotImplementedError("the torchvision stand-in does not implement Resize(max_size=...)")
        self.size = size
        self.interpolation = InterpolationMode(interpolation)
        self.antialias = bool(antialias)

    def target(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.size, int) or len(self.size) == 1:
            short_target = self.size if isinstance(self.size, int) else int(self.size[0])
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = short_target, int(short_target * long / short)
            return (new_long, new_short) if width <= height else (new_short, new_long)
        return int(self.size[0]), int(self.size[1])

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        height, width = img.shape[-2:]
        new_h, new_w = self.target(height, width)
        if (new_h, new_w) == (height, width):
            return img
        batched = img.reshape(-1, *img.shape[-3:])
        mode = self.interpolation.value
        kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": self.antialias}
        out = F.interpolate(batched, size=(new_h, new_w), mode=mode, **kwargs)
        return out.reshape(*img.shape[:-2], new_h, new_w)


class CenterCrop:
    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        crop_h, crop_w = self.size
        height, width = img.shape[-2:]
        if crop_h > height or crop_w > width:  # torchvision pads with zeros, then crops
            pad_l, pad_t = (crop_w - width) // 2 if crop_w > width else 0, (crop_h - height) // 2 if crop_h > height else 0
            pad_r = (crop_w - width + 1) // 2 if crop_w > width else 0
            pad_b = (crop_h - height + 1) // 2 if crop_h > height else 0
            img = F.pad(img, [pad_l, pad_r, pad_t, pad_b], value=0.0)
            height, width = img.shape[-2:]
            if (height, width) == (crop_h, crop_w):
                return img
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return img[..., top:top + crop_h, left:left + crop_w]


class Normalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean = list(mean)
        self.std = list(std)
        if any(s == 0 for s in self.std):
            raise ValueError(f"std evaluated to zero, leading to division by zero: {self.std}")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return (img - mean) / std


# What hy3dgen.shapegen (pipelines, models, schedulers, pre/postprocessors) imports from other packages.
HY3DGEN_DEPENDENCIES = ("numpy", "torch", "yaml", "tqdm", "einops", "cv2", "trimesh", "pymeshlab", "skimage.measure",
                        "PIL.Image", "transformers", "diffusers", "diffusers.utils", "diffusers.utils.torch_utils",
                        "diffusers.utils.import_utils", "diffusers.configuration_utils",
                        "diffusers.schedulers.scheduling_utils")


def transforms_module() -> types.ModuleType:
    """This file's classes as a module named `torchvision.transforms` (with a spec, as importlib expects)."""
    module = types.ModuleType("torchvision.transforms", "torch-only stand-in (see tools/backends/_torchvision_standin.py)")
    module.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", loader=None)
    for name in ("Compose", "Resize", "CenterCrop", "Normalize", "InterpolationMode"):
        setattr(module, name, globals()[name])
    module.ATELIER_STANDIN = True
    return module


def real_torchvision_imports() -> bool:
    """True when a real torchvision imports here. Any failure counts: a CUDA build on a CPU torch raises
    RuntimeError or OSError, not ImportError."""
    if "torchvision" in sys.modules and not getattr(sys.modules["torchvision"], "ATELIER_STANDIN", False):
        return True
    try:
        importlib.import_module("torchvision")
        return True
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision must not linger
        return False


def conditioner_module() -> tuple[types.ModuleType, str]:
    """Import hy3dgen's conditioner module; returns it and "torchvision" or "stand-in" (which transforms it uses)."""
    name = "hy3dgen.shapegen.models.conditioner"
    if name in sys.modules:
        module = sys.modules[name]
        return module, "stand-in" if getattr(module.transforms, "ATELIER_STANDIN", False) else "torchvision"
    if real_torchvision_imports():
        return importlib.import_module(name), "torchvision"
    # Every third-party module hy3dgen.shapegen imports is imported first, without the stand-in, so that only
    # hy3dgen's own module bodies run while it is in sys.modules (diffusers and transformers record at import
    # time whether torchvision is there; they must keep seeing that it is not).
    for dependency in HY3DGEN_DEPENDENCIES:
        importlib.import_module(dependency)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model  # noqa: F401

    package = types.ModuleType("torchvision", "torch-only stand-in for hy3dgen's conditioner")
    package.__spec__ = importlib.machinery.ModuleSpec("torchvision", loader=None, is_package=True)
    package.__path__ = []
    package.ATELIER_STANDIN = True
    package.transforms = transforms_module()
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = package, package.transforms
    try:
        module = importlib.import_module(name)
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.transforms"]
    return module, "stand-in"
