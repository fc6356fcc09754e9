"""The asset kinds: what a creation can hold (image, model, and whatever a tool adds), each with its file
extensions, its mime type and the generic studio renderer that shows it when its tool brings no card of its own.

The state keeps the current creation's assets by kind (`state["assets"][kind]`); the decision context, the
guard (a tool that needs a kind), the studio's step output and the history API read kinds from here. Memory does
not import this (layers go downward): the store keeps any kind as a plain string.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

RENDERERS = ("image", "model", "text", "file")  # what the studio can draw without a tool's own card


@dataclass(frozen=True)
class Kind:
    name: str
    extensions: tuple[str, ...]  # the first is what a new file gets
    mime: str
    renderer: str = "file"
    label: str = ""  # in words: "3D model"

    def __post_init__(self):
        if not self.name.isidentifier() or len(self.name) > 16:  # memory's asset kind column is 16 characters
            raise ValueError(f"a kind's name is a short identifier (16 characters at most), not {self.name!r}")
        if self.renderer not in RENDERERS:
            raise ValueError(f"{self.name}: renderer must be one of {', '.join(RENDERERS)}, not {self.renderer!r}")

    @property
    def words(self) -> str:
        return self.label or self.name


class KindTable:
    def __init__(self, kinds: tuple[Kind, ...]):
        self._kinds = {k.name: k for k in kinds}
        self._lock = threading.Lock()

    def register(self, kind: Kind) -> Kind:
        with self._lock:
            known = self._kinds.get(kind.name)
            if known is not None and known != kind:
                raise ValueError(f"a different kind named {kind.name!r} is already registered")
            self._kinds[kind.name] = kind
        return kind

    def unregister(self, name: str) -> None:
        if name not in ("image", "model"):
            with self._lock:
                self._kinds.pop(name, None)

    def get(self, name: str | None) -> Kind | None:
        return self._kinds.get(name or "")

    def names(self) -> list[str]:
        return list(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds


KINDS = KindTable((
    Kind("image", (".png", ".jpg", ".webp"), "image/png", renderer="image", label="image"),
    Kind("model", (".glb", ".gltf", ".obj", ".ply"), "model/gltf-binary", renderer="model", label="3D model"),
))
