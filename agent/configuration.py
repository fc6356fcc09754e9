"""Per-run configuration, read from RunnableConfig["configurable"] (as in LangGraph's templates).

Process-wide deployment settings are in agent/settings.py; these are the knobs a user or API caller
sets per thread or per run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from agent.settings import get_settings
from memory.validation import validate_seed, validate_size, validate_steps, validate_thread_id, validate_user_id

POLICIES = ("auto", "model", "router", "hybrid")


@dataclass(kw_only=True)
class Configuration:
    user_id: str = field(default="local", metadata={"description": "Whose memory this run reads and writes."})
    thread_id: str | None = field(default=None, metadata={"description": "Conversation id (checkpoints)."})
    decision_policy: str = field(default_factory=lambda: get_settings().decision_policy,
                                 metadata={"description": "auto | model | router | hybrid: who picks the next tool (agent/decision.py)."})
    enhance: bool = field(default=True, metadata={"description": "Rewrite ideas with enhance_prompt first."})
    auto_3d: bool = field(default=True, metadata={"description": "Make a 3D model after each new image."})
    review_prompt: bool = field(default=False, metadata={"description": "Pause after enhance_prompt for the user to accept or edit."})
    width: int = 512
    height: int = 512
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = field(default=None, metadata={"description": "Guidance scale for learned image models; default: the model family's."})
    negative_prompt: str | None = None
    image_backends: list[str] = field(default_factory=lambda: get_settings().image_backend_list)
    model_backends: list[str] = field(default_factory=lambda: get_settings().model_backend_list)

    def __post_init__(self) -> None:
        if self.decision_policy not in POLICIES:
            raise ValueError(f"decision_policy must be one of {', '.join(POLICIES)}, not {self.decision_policy!r}")
        # One set of rules for the CLI, the API server and the studio (memory/validation.py); the graph's
        # first node builds this, so a bad value stops a run before anything is made or stored.
        self.width, self.height = validate_size(self.width, self.height)
        self.seed = validate_seed(self.seed)
        self.steps = validate_steps(self.steps)
        self.user_id = validate_user_id(self.user_id)
        if self.thread_id is not None:
            self.thread_id = validate_thread_id(self.thread_id)
        if isinstance(self.image_backends, str):
            self.image_backends = [b.strip() for b in self.image_backends.split(",") if b.strip()]
        if isinstance(self.model_backends, str):
            self.model_backends = [b.strip() for b in self.model_backends.split(",") if b.strip()]

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None = None) -> "Configuration":
        configurable: dict[str, Any] = dict((config or {}).get("configurable") or {})
        # The LangGraph API server passes the authenticated user / metadata in other keys; accept the usual ones.
        if "user_id" not in configurable:
            metadata = (config or {}).get("metadata") or {}
            user = metadata.get("user_id") or configurable.get("langgraph_auth_user_id")
            if user:
                configurable["user_id"] = user
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in configurable.items() if k in names and v is not None})
