"""Per-run configuration, read from RunnableConfig["configurable"] (as in LangGraph's templates): the tools'
part (user, size, seed, backends: tools/configuration.py) and how this run decides.

Process-wide deployment settings are each layer's settings.py; these are the knobs a user or API caller sets per
thread or per run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from agent.settings import get_settings
from tools.configuration import ToolConfiguration

POLICIES = ("auto", "model", "router", "hybrid")


@dataclass(kw_only=True)
class Configuration(ToolConfiguration):
    decision_policy: str = field(default_factory=lambda: get_settings().decision_policy,
                                 metadata={"description": "auto | model | router | hybrid: who picks the next tool (agent/decision.py)."})
    enhance: bool = field(default=True, metadata={"description": "Rewrite ideas with enhance_prompt first."})
    auto_3d: bool = field(default=True, metadata={"description": "Make a 3D model after each new image."})
    review_prompt: bool = field(default=False, metadata={"description": "Pause after enhance_prompt for the user to accept or edit."})

    def __post_init__(self) -> None:
        if self.decision_policy not in POLICIES:
            raise ValueError(f"decision_policy must be one of {', '.join(POLICIES)}, not {self.decision_policy!r}")
        super().__post_init__()
