"""Settings of the memory layer: where runtime data lives and how the stores behave (models/settings.py says
how layers own their settings)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from models.settings import LayerSettings, cached, check_url


class MemorySettings(LayerSettings):
    data_dir: Path = Field(Path("data"), description="Root of all runtime data: database, assets, index, checkpoints.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite under data_dir. A postgresql:// URL "
                                     "also moves the thread checkpoints to Postgres.")
    chroma_url: str | None = Field(None, description="Chroma server URL (http://host:port); default embedded PersistentClient.")
    session_ttl_seconds: int = Field(3600, ge=1, description="How long the session's short-term context (memory/session.py) lives.")
    creation_lease_seconds: float = Field(900, gt=0, description="Seconds a run may go without a heartbeat before its in-progress "
                                          "creation counts as interrupted (a run on another host; on this host a dead process is "
                                          "noticed at once).")
    recall_exact_limit: int = Field(150000, ge=0, description="A user with at most this many vectors is searched exactly "
                                    "(numpy over their vectors), above it through Chroma's HNSW index (memory/vectors.py).")
    upload_max_bytes: int = Field(20_000_000, ge=1, description="Largest picture a user may bring in (CLI --image, MCP make_3d, "
                                  "the studio); larger is refused before it is decoded.")
    upload_max_pixels: int = Field(40_000_000, ge=1, description="Most pixels (width x height) an uploaded picture may have "
                                   "(decompression bombs are refused before decoding).")

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url_in_form(cls, value: str | None) -> str | None:
        return check_url(value, "http://127.0.0.1:8000")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'atelier.db').resolve()}"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "assets"


get_settings = cached(MemorySettings)
