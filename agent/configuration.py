"""Per-run configuration, read from RunnableConfig["configurable"] (as in LangGraph's templates): the tools'
part (user, size, seed, backends: tools/configuration.py) and how this run decides.

Process-wide deployment settings are each layer's settings.py; these are the knobs a user or API caller sets per
thread or per run. Every one is described and checked here (types, ranges, lengths): the API server's run-create
check (422), the CLI (exit 2) and the graph's first node all build a Configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from agent.settings import get_settings
from memory.validation import InvalidInput, shown
from tools.configuration import ToolConfiguration, validate_flag

POLICIES = ("auto", "model", "router", "hybrid")


@dataclass(kw_only=True)
class Configuration(ToolConfiguration):
    decision_policy: str = field(default_factory=lambda: get_settings().decision_policy,
                                 metadata={"description": "auto | model | router | hybrid: who picks the next tool (agent/decision.py)."})
    enhance: bool = field(default=True, metadata={"description": "Rewrite ideas with enhance_prompt first (true / false)."})
    auto_3d: bool = field(default=True, metadata={"description": "Make a 3D model after each new image (true / false)."})
    review_prompt: bool = field(default=False, metadata={"description": "Pause after enhance_prompt for the user to accept or "
                                                                        "edit (true / false)."})

    def __post_init__(self) -> None:
        if not isinstance(self.decision_policy, str) or self.decision_policy not in POLICIES:
            raise InvalidInput("decision_policy", f"must be one of {', '.join(POLICIES)}, not {shown(self.decision_policy)}")
        self.enhance = validate_flag(self.enhance, "enhance")
        self.auto_3d = validate_flag(self.auto_3d, "auto_3d")
        self.review_prompt = validate_flag(self.review_prompt, "review_prompt")
        super().__post_init__()
