"""What the memory layer is given to keep: a generated asset (bytes + mime) and where it came from. The tools
layer's backends return these (tools/backends/base.py re-exports it), and the store writes them; defining it here
keeps memory from importing tools."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GeneratedAsset:
    kind: str  # an asset kind (tools/kinds.py): image | model | what a tool adds ("caption")
    data: bytes
    mime: str
    backend: str
    # Anything worth keeping in the creation record: app id/version/manifest, seed, is_sketch, mesh stats ...
    metadata: dict[str, Any] = field(default_factory=dict)
