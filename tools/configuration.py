"""What a tool call needs from the run's configuration (RunnableConfig["configurable"], as in LangGraph's
templates): whose memory, and how to generate. The agent's Configuration (agent/configuration.py) extends it with
how to decide; tools read only these fields, so they do not import the agent layer."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from memory.validation import validate_seed, validate_size, validate_steps, validate_thread_id, validate_user_id
from tools.settings import get_settings, split_names


@dataclass(kw_only=True)
class ToolConfiguration:
    user_id: str = field(default="local", metadata={"description": "Whose memory this run reads and writes."})
    thread_id: str | None = field(default=None, metadata={"description": "Conversation id (checkpoints)."})
    width: int = 512
    height: int = 512
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = field(default=None, metadata={"description": "Guidance scale for learned image models; default: the model family's."})
    negative_prompt: str | None = None
    image_backends: list[str] = field(default_factory=lambda: get_settings().image_backend_list)
    model_backends: list[str] = field(default_factory=lambda: get_settings().model_backend_list)

    def __post_init__(self) -> None:
        # One set of rules for the CLI, the API server and the studio (memory/validation.py); the graph's
        # first node builds the configuration, so a bad value stops a run before anything is made or stored.
        self.width, self.height = validate_size(self.width, self.height)
        self.seed = validate_seed(self.seed)
        self.steps = validate_steps(self.steps)
        self.user_id = validate_user_id(self.user_id)
        if self.thread_id is not None:
            self.thread_id = validate_thread_id(self.thread_id)
        self.image_backends = split_names(self.image_backends)
        self.model_backends = split_names(self.model_backends)

    @classmethod
    def from_runnable_config(cls, config: RunnableConfig | None = None):
        configurable: dict[str, Any] = dict((config or {}).get("configurable") or {})
        # The LangGraph API server passes the authenticated user / metadata in other keys; accept the usual ones.
        if "user_id" not in configurable:
            metadata = (config or {}).get("metadata") or {}
            user = metadata.get("user_id") or configurable.get("langgraph_auth_user_id")
            if user:
                configurable["user_id"] = user
        names = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in configurable.items() if k in names and v is not None})
