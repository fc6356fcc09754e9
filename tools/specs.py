"""The tool table: every tool the agent can call. A tool is one module that owns everything about itself
(tools/builtin/<name>.py for the built-ins): the @tool function and its ToolSpec, which says what the rest of the
system needs to know; the decision schema, the prompts' tool list, the router (plans and cue words), the guard,
the CLI/API turn report, the graph's reply and the studio read it from here (no second list of tools anywhere):

    name, description, argument schema   the @tool's own (what the model is shown and validated against)
    label                                the step in words for people: "make the 3D model"
    produces                             what its result adds: prompt | recalled | an asset kind (tools/kinds.py)
    kind                                 a new asset kind the tool brings (registered with it), if any
    needs                                what must exist before it can run: request | memory | an asset kind
    switch                               the turn setting that turns it off (enhance), if any
    impossible                           what the user reads when the guard stops a call for a missing need
    cues, plan                           the router's words for it ("caption it") and the tools they plan
    arguments(ask) -> dict               the router's arguments for it (ask: the request, intent, idea, state)
    summarize(result) -> str             its JSON result in one line, for the model
    reply(state, step, note) -> str      its line in the graph's reply (None: nothing to add)
    simulate(args) -> dict               a plausible result for `atelier eval decisions` (no tool runs)
    card(step) -> str                    its studio step output (None: the generic one for its kind)

Registering, like the backends (tools/backends/__init__.py): a built-in module defines `register_tools(register)`
and is named once in tools/builtin/__init__.py BUILT_IN; an outside package declares an entry point in the
`atelier.tools` group (a ToolSpec, or a module with register_tools); a test calls TOOL_TABLE.register(spec).
"""
from __future__ import annotations

import importlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from .kinds import KINDS, Kind

log = logging.getLogger("atelier.tools")

ENTRY_POINT_GROUP = "atelier.tools"
# What each need means, for the guard's reason ("image_to_3d needs an image and there is none"); an asset kind
# is a need too ("a caption").
NEEDS = {"image": "an image", "memory": "a stored creation", "request": "a request"}
PRODUCES = ("prompt", "recalled")  # besides the asset kinds


def need_words(need: str) -> str:
    if need in NEEDS:
        return NEEDS[need]
    kind = KINDS.get(need)
    words = kind.words if kind else need
    return ("an " if words[:1] in "aeiou" else "a ") + words


@dataclass(frozen=True)
class ArgumentRequest:
    """What the router knows when it fills a tool's arguments (agent/nodes.py tool_arguments)."""

    request: str  # the user's words
    intent: str  # the router's intent name
    idea: str  # the request as an idea (a remix's words folded into the recalled creation's prompt)
    query: str  # the request as a memory query (a remix's change cut off)
    state: dict


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
    kind: Kind | None = None
    cues: tuple[str, ...] = ()  # regular expressions (case-insensitive) that route a request to this tool's plan
    plan: tuple[str, ...] | None = None  # the tools its cues plan, in order (default: this tool alone)
    arguments: Callable[[ArgumentRequest], dict] | None = None
    card: Callable[[dict], str | None] | None = None

    def __post_init__(self):
        if not getattr(self.tool, "name", None) or not hasattr(self.tool, "tool_call_schema"):
            raise TypeError(f"ToolSpec.tool must be a @tool object, not {self.tool!r}")
        kinds = [*KINDS.names(), *([self.kind.name] if self.kind else [])]
        if self.produces is not None and self.produces not in (*PRODUCES, *kinds):
            raise ValueError(f"{self.name}: produces must be one of {', '.join((*PRODUCES, *kinds))}, not {self.produces!r}")
        unknown = [n for n in self.needs if n not in NEEDS and n not in kinds]
        if unknown:
            raise ValueError(f"{self.name}: unknown needs {unknown}; the needs are {', '.join((*NEEDS, *kinds))}")
        for cue in self.cues:
            re.compile(cue)  # a broken cue fails at registration, not in the middle of a turn

    @property
    def cue_pattern(self) -> re.Pattern | None:
        return re.compile("|".join(f"(?:{c})" for c in self.cues), re.I) if self.cues else None

    @property
    def tool_plan(self) -> tuple[str, ...]:
        return self.plan if self.plan is not None else (self.name,)

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


def _registered_by(target: Any, register: Callable[[ToolSpec], ToolSpec]) -> None:
    """An entry point's object: a ToolSpec, or a module whose register_tools(register) registers its tools."""
    if isinstance(target, ToolSpec):
        register(target)
    elif callable(getattr(target, "register_tools", None)):
        target.register_tools(register)
    else:
        raise TypeError(f"{target!r} is neither a ToolSpec nor a module with register_tools(register)")


def built_in_specs() -> list[ToolSpec]:
    """The built-ins (tools/builtin/, in BUILT_IN's order), then the tools of outside packages' entry points."""
    from .builtin import BUILT_IN

    found: list[ToolSpec] = []
    for name in BUILT_IN:
        importlib.import_module(f"tools.builtin.{name}").register_tools(found.append)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            _registered_by(entry.load(), found.append)
        except Exception as exc:  # one broken plugin must not take the built-ins down with it
            log.warning("step=register_tool entry=%s status=failed reason=%s", entry.name, exc)
    return found


class ToolTable:
    """The registered tools by name, in registration order. Built-ins load on first use (lazily: tools/tools.py
    imports the backends and the store, which the table's readers often do not need yet)."""

    def __init__(self, entries: Callable[[], list[ToolSpec]] = built_in_specs):
        self._entries = entries
        self._specs: dict[str, ToolSpec] | None = None
        self._lock = threading.RLock()

    def _loaded(self) -> dict[str, ToolSpec]:
        with self._lock:
            if self._specs is None:
                specs: dict[str, ToolSpec] = {}
                for spec in self._entries():
                    if spec.kind is not None:
                        KINDS.register(spec.kind)
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
            if spec.kind is not None:
                KINDS.register(spec.kind)
            specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            spec = self._loaded().pop(name, None)
            if spec is not None and spec.kind is not None:
                KINDS.unregister(spec.kind.name)

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

    def asset_kinds(self) -> list[str]:
        """The asset kinds the registered tools produce, in table order (image, model, then plugins' kinds)."""
        return list(dict.fromkeys(s.produces for s in self.specs() if s.produces in KINDS))

    def cued(self, text: str) -> ToolSpec | None:
        """The tool whose own cue words the request uses ("caption it" → write_caption), if any."""
        for spec in self.specs():
            if (pattern := spec.cue_pattern) is not None and pattern.search(text or ""):
                return spec
        return None


TOOL_TABLE = ToolTable()
