"""The tool table: every tool the agent can call, each declared once, next to its @tool function.

A ToolSpec says what the rest of the system needs to know about a tool; the decision schema, the prompts' tool
list, the router's guard, the CLI/API turn report, the graph's reply and the studio's step labels all read it
from here (no second list of tool names anywhere):

    name, description, argument schema   the @tool's own (what the model is shown and validated against)
    label                                the step in words for people: "make the 3D model"
    produces                             what its result adds to the thread: prompt | image | model | recalled
    needs                                what must exist before it can run: image | memory | request
    switch                               the turn setting that turns it off (enhance), if any
    impossible                           what the user reads when the guard stops a call for a missing need
    summarize(result) -> str             its JSON result in one line, for the model
    reply(state, step, note) -> str      its line in the graph's reply (None: nothing to add)
    simulate(args) -> dict               a plausible result for `atelier eval decisions` (no tool runs)

Adding a tool: write tools/<name>.py with the @tool function and its SPEC = ToolSpec(...), and add one line,
"tools.<name>:SPEC", to BUILT_IN below (an outside package, or a test, calls TOOL_TABLE.register(spec)).
"""
from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The tools, in the order the model is shown them: one line each, "module:SPEC".
BUILT_IN = (
    "tools.tools:ENHANCE_PROMPT",
    "tools.tools:TEXT_TO_IMAGE",
    "tools.tools:IMAGE_TO_3D",
    "tools.tools:RECALL_SIMILAR",
)

# What each need means, for the guard's reason ("image_to_3d needs an image and there is none").
NEEDS = {"image": "an image", "memory": "a stored creation", "request": "a request"}
PRODUCES = ("prompt", "image", "model", "recalled")


def _json_line(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False)[:200]


@dataclass(frozen=True)
class ToolSpec:
    tool: Any  # the @tool object (langchain BaseTool): name, description, argument schema
    label: str
    produces: str | None = None
    needs: tuple[str, ...] = ()
    switch: str | None = None
    impossible: str | None = None
    summarize: Callable[[dict], str] = _json_line
    reply: Callable[[dict, dict, str], str | None] = field(default=lambda state, step, note: None)
    simulate: Callable[[dict], dict] = field(default=lambda args: {})

    def __post_init__(self):
        if not getattr(self.tool, "name", None) or not hasattr(self.tool, "tool_call_schema"):
            raise TypeError(f"ToolSpec.tool must be a @tool object, not {self.tool!r}")
        if self.produces is not None and self.produces not in PRODUCES:
            raise ValueError(f"{self.name}: produces must be one of {', '.join(PRODUCES)}, not {self.produces!r}")
        unknown = [n for n in self.needs if n not in NEEDS]
        if unknown:
            raise ValueError(f"{self.name}: unknown needs {unknown}; the needs are {', '.join(NEEDS)}")

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def description(self) -> str:
        return self.tool.description


def _spec_at(entry: str) -> ToolSpec:
    """"module:ATTRIBUTE" → the ToolSpec it names (imported on demand)."""
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)


class ToolTable:
    """The registered tools by name, in registration order. Built-ins load on first use (lazily: tools/tools.py
    imports the backends and the store, which the table's readers often do not need yet)."""

    def __init__(self, entries: tuple[str, ...] = BUILT_IN):
        self._entries = entries
        self._specs: dict[str, ToolSpec] | None = None
        self._lock = threading.RLock()

    def _loaded(self) -> dict[str, ToolSpec]:
        with self._lock:
            if self._specs is None:
                specs: dict[str, ToolSpec] = {}
                for entry in self._entries:
                    spec = _spec_at(entry)
                    specs[spec.name] = spec
                self._specs = specs
            return self._specs

    def register(self, spec: ToolSpec | str) -> ToolSpec:
        """Add a tool (a ToolSpec, or "module:ATTRIBUTE"); a graph built afterwards can call it."""
        if isinstance(spec, str):
            spec = _spec_at(spec)
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"register() takes a ToolSpec, not {spec!r}")
        with self._lock:
            specs = self._loaded()
            if spec.name in specs and specs[spec.name] is not spec:
                raise ValueError(f"a tool named {spec.name!r} is already registered")
            specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loaded().pop(name, None)

    def specs(self) -> list[ToolSpec]:
        return list(self._loaded().values())

    def tools(self) -> list:
        """The @tool objects, for ToolNode and bind_tools."""
        return [s.tool for s in self.specs()]

    def names(self) -> list[str]:
        return list(self._loaded())

    def get(self, name: str | None) -> ToolSpec | None:
        return self._loaded().get(name or "")

    def __getitem__(self, name: str) -> ToolSpec:
        spec = self.get(name)
        if spec is None:
            raise KeyError(f"there is no tool named {name!r}; the tools are {', '.join(self.names())}")
        return spec

    def producing(self, *kinds: str) -> set[str]:
        """Names of the tools whose result adds one of `kinds` (e.g. "image", "model")."""
        return {s.name for s in self.specs() if s.produces in kinds}


TOOL_TABLE = ToolTable()
