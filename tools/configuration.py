"""What a tool call needs from the run's configuration (RunnableConfig["configurable"], as in LangGraph's
templates): whose memory, and how to generate. The agent's Configuration (agent/configuration.py) extends it with
how to decide; tools read only these fields, so they do not import the agent layer.

Every field is checked when a configuration is built (one place: the API server's run-create check, the CLI and
the graph's first node all build one), so a value of the wrong type or out of range is refused with a message
naming the field (API 422, CLI exit 2) instead of being used: a string "false" is not true, NaN is not a
guidance scale, and a 200 KB negative prompt is not a negative prompt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from langchain_core.runnables import RunnableConfig

from memory.validation import InvalidInput, clean_bounded, shown, validate_seed, validate_size, validate_steps, validate_thread_id, validate_user_id
from tools.settings import get_settings, split_names

GUIDANCE_MIN, GUIDANCE_MAX = 0.0, 50.0  # classifier-free guidance: 0 (turbo models) .. far above any model's useful range
NEGATIVE_PROMPT_MAX_CHARS = 1000  # CLIP reads 77 tokens; a thousand characters is already generous
BACKENDS_MAX, BACKEND_NAME_MAX_CHARS = 16, 64
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


def validate_flag(value: Any, field_name: str) -> bool:
    """A yes/no setting: a real boolean, or an unambiguous spelling of one ("false", "no", "off", "0", 0 and the
    like; any case). Anything else is refused — a non-empty string used to count as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidInput(field_name, f"must be true or false, not {shown(value)}")


def validate_number(value: Any, field_name: str, low: float, high: float) -> float:
    """A finite number (int or float, not a boolean or a string) in low..high."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field_name, f"must be a number between {low:g} and {high:g}, not {shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(field_name, f"must be a finite number between {low:g} and {high:g}, not {value}")
    if not low <= value <= high:
        raise InvalidInput(field_name, f"must be between {low:g} and {high:g}, not {value:g}")
    return float(value)


def validate_backends(value: Any, field_name: str) -> list[str]:
    """Backend names: a list of strings or one comma-separated string; at most BACKENDS_MAX short names."""
    if not isinstance(value, str | list | tuple) or (not isinstance(value, str) and not all(isinstance(v, str) for v in value)):
        raise InvalidInput(field_name, f"must be a list of backend names or a comma-separated string, not {shown(value)}")
    if isinstance(value, str) and len(value) > BACKENDS_MAX * (BACKEND_NAME_MAX_CHARS + 1):
        raise InvalidInput(field_name, f"is {len(value)} characters long")
    names = split_names(list(value) if not isinstance(value, str) else value)
    if len(names) > BACKENDS_MAX:
        raise InvalidInput(field_name, f"names {len(names)} backends; the limit is {BACKENDS_MAX}")
    for name in names:
        if len(name) > BACKEND_NAME_MAX_CHARS or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidInput(field_name, f"has a name that is not a backend name: {shown(name)}")
    return names


@dataclass(kw_only=True)
class ToolConfiguration:
    user_id: str = field(default="local", metadata={"description": "Whose memory this run reads and writes (1-128 characters; "
                                                                   "the API server sets it to the caller)."})
    thread_id: str | None = field(default=None, metadata={"description": "Conversation id (checkpoints)."})
    width: int = field(default=512, metadata={"description": "Image width in pixels, a whole number 64-2048."})
    height: int = field(default=512, metadata={"description": "Image height in pixels, a whole number 64-2048."})
    seed: int | None = field(default=None, metadata={"description": "Random seed, a whole number 0..2**63-1; unset = random."})
    steps: int | None = field(default=None, metadata={"description": "Denoising steps for learned image models, 1-200; "
                                                                     "unset = the model family's default."})
    guidance: float | None = field(default=None, metadata={"description": f"Guidance scale for learned image models, a finite "
                                                                          f"number {GUIDANCE_MIN:g}-{GUIDANCE_MAX:g}; unset = the model family's."})
    negative_prompt: str | None = field(default=None, metadata={"description": f"What the image should not show, at most "
                                                                              f"{NEGATIVE_PROMPT_MAX_CHARS} characters (learned image models)."})
    image_backends: list[str] = field(default_factory=lambda: get_settings().image_backend_list,
                                      metadata={"description": "Text-to-image backends tried in order (a list or 'a,b'); "
                                                               "default ATELIER_IMAGE_BACKENDS."})
    model_backends: list[str] = field(default_factory=lambda: get_settings().model_backend_list,
                                      metadata={"description": "Image-to-3D backends tried in order (a list or 'a,b'); "
                                                               "default ATELIER_MODEL_BACKENDS."})

    def __post_init__(self) -> None:
        # One set of rules for the CLI, the API server and the studio (memory/validation.py and the validators
        # above); the graph's first node builds the configuration, so a bad value stops a run before anything is
        # made or stored.
        self.width, self.height = validate_size(self.width, self.height)
        self.seed = validate_seed(self.seed)
        self.steps = validate_steps(self.steps)
        self.user_id = validate_user_id(self.user_id)
        if self.thread_id is not None:
            self.thread_id = validate_thread_id(self.thread_id)
        if self.guidance is not None:
            self.guidance = validate_number(self.guidance, "guidance", GUIDANCE_MIN, GUIDANCE_MAX)
        if self.negative_prompt is not None:
            if not isinstance(self.negative_prompt, str):
                raise InvalidInput("negative_prompt", f"must be text, not {shown(self.negative_prompt)}")
            self.negative_prompt = clean_bounded(self.negative_prompt, NEGATIVE_PROMPT_MAX_CHARS, "negative_prompt") or None
        self.image_backends = validate_backends(self.image_backends, "image_backends")
        self.model_backends = validate_backends(self.model_backends, "model_backends")

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

    @classmethod
    def described(cls) -> dict[str, str]:
        """Every per-run setting and its description (the README's table and the tests read this)."""
        return {f.name: f.metadata.get("description", "") for f in fields(cls) if f.init}
