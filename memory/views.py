"""What the store hands out (CreationView, AssetView) and the small rules its writers share: the status a set of
assets makes, the text a creation is indexed by. The store, its bulk paths and the index upkeep import these;
this module imports nothing of the store's."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

STATUSES = ("in_progress", "complete", "image_only", "model_only", "failed", "interrupted", "image_ready")


@dataclass
class AssetView:
    kind: str
    path: str  # absolute path on this machine
    rel_path: str  # relative to the data dir (what the record stores)
    sha256: str
    mime: str
    backend: str
    bytes: int
    meta: dict = field(default_factory=dict)


@dataclass
class CreationView:
    id: str
    user_id: str
    thread_id: str | None
    parent_id: str | None
    created_at: str
    status: str
    original_prompt: str
    enhanced_prompt: str
    assets: list[AssetView]
    score: float | None = None
    status_reason: str | None = None

    def asset(self, kind: str) -> AssetView | None:
        return next((a for a in reversed(self.assets) if a.kind == kind), None)

    @property
    def image(self) -> AssetView | None:
        return self.asset("image")

    @property
    def model(self) -> AssetView | None:
        return self.asset("model")

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    @property
    def kinds(self) -> list[str]:
        """The asset kinds the creation holds, in the order they were added (image, model, and any a tool adds:
        memory keeps a kind as a plain string; tools/kinds.py is the table of them)."""
        return list(dict.fromkeys(a.kind for a in self.assets))

    def to_dict(self) -> dict:
        return {**asdict(self), "kinds": self.kinds}


class IndexTexts(Protocol):  # what index_text reads: a view, or a creation not yet committed
    original_prompt: str
    enhanced_prompt: str


@dataclass
class Texts:  # an IndexTexts before there is a view
    original_prompt: str
    enhanced_prompt: str


def index_text(view: IndexTexts) -> str:
    # The original idea carries the user's words; the enhanced prompt adds style words they may search by.
    return f"{view.original_prompt}. {view.enhanced_prompt}"


def status_of(rows) -> str:
    """The status a creation's asset rows make once no run works on it any more."""
    kinds = {r.kind for r in rows}
    return "complete" if {"image", "model"} <= kinds else ("image_only" if "image" in kinds else "model_only")


def utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:  # SQLite hands back naive datetimes; we always store UTC
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)
