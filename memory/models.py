"""SQLAlchemy 2.0 ORM: the source of truth for every creation."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class Base(DeclarativeBase):
    pass


class CreationRecord(Base):
    __tablename__ = "creations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    thread_id: Mapped[str | None] = mapped_column(String(128), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("creations.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # in_progress: a run is working on it (lease_until/lease_owner say which process, until when); complete: image
    # and model; image_only: 3D was not requested; model_only; failed (status_reason says why); interrupted: found
    # in_progress after its process ended or its lease ran out. image_ready: rows from before statuses were kept.
    status: Mapped[str] = mapped_column(String(32), default="image_only", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The run's tool call that made it ("run:<run id>:text_to_image"): a replayed run finds it instead of a second row.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)

    prompt: Mapped[Prompt] = relationship(back_populates="creation", uselist=False, cascade="all, delete-orphan", lazy="selectin")
    assets: Mapped[list[Asset]] = relationship(back_populates="creation", cascade="all, delete-orphan", lazy="selectin", order_by="Asset.id")
    embeddings: Mapped[list[VectorEmbedding]] = relationship(back_populates="creation", cascade="all, delete-orphan", lazy="selectin")


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    creation_id: Mapped[str] = mapped_column(ForeignKey("creations.id", ondelete="CASCADE"), unique=True)
    original: Mapped[str] = mapped_column(Text)
    enhanced: Mapped[str] = mapped_column(Text)

    creation: Mapped[CreationRecord] = relationship(back_populates="prompt")


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    creation_id: Mapped[str] = mapped_column(ForeignKey("creations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | model | any kind a tool adds (tools/kinds.py)
    path: Mapped[str] = mapped_column(Text)  # relative to the data dir
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # "<tool call key>#<n>" for assets added by a tool call (image_to_3d): a replay attaches them once.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)

    creation: Mapped[CreationRecord] = relationship(back_populates="assets")


class VectorEmbedding(Base):
    __tablename__ = "vector_embeddings"
    __table_args__ = (UniqueConstraint("creation_id", "model_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    creation_id: Mapped[str] = mapped_column(ForeignKey("creations.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    chroma_id: Mapped[str] = mapped_column(String(64))

    creation: Mapped[CreationRecord] = relationship(back_populates="embeddings")


class SessionRow(Base):
    """What a user is working on across their threads (memory/session.py SessionContext): one row per user."""
    __tablename__ = "session_context"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    creation_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    recalled: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[float] = mapped_column(Float)  # wall-clock seconds: every process on the host compares the same clock
