"""What the graph's nodes and tools work with — the memory store, the LLM and the session context — passed in
by the graph factory (agent/graph.build_graph(store=..., llm=...)) instead of reached for through globals.

Why the run config and not LangGraph's Runtime context: a `context=` is per invocation, so every caller
(run_turn, the studio, the API server) would have to pass Python objects on every stream() call, and the API
server (langgraph.json: agent.graph:graph) can only pass JSON. The factory binds the dependencies once with
`graph.with_config(configurable={DEPS_KEY: deps})`; LangGraph hands the config to every node and tool, and
keys starting with "__" never reach a checkpoint's metadata. Nothing bound (the API server's module-level
graph) means the process-wide defaults: get_store(), get_llm(), the store's session context.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEPS_KEY = "__atelier_deps__"


@dataclass(frozen=True)
class Dependencies:
    store: Any = None  # memory.store.MemoryStore; None = get_store()
    llm: Any = None  # models.llm.ChatLLM, or a callable returning one (loaded on first use); None = get_llm()
    session: Any = None  # memory.session.SessionContext; None = the one kept next to the store

    def get_store(self):
        if self.store is not None:
            return self.store
        from memory.store import get_store

        return get_store()

    def get_llm(self):
        if self.llm is None:
            from models.llm import get_llm

            return get_llm()
        return self.llm() if callable(self.llm) and not hasattr(self.llm, "chat") else self.llm

    def get_session(self):
        if self.session is not None:
            return self.session
        from memory.session import session_context

        return session_context(self.get_store())


_DEFAULTS = Dependencies()


def dependencies(config: Any) -> Dependencies:
    """The dependencies bound to the graph running with `config` (the defaults when none were bound)."""
    configurable = (config or {}).get("configurable") or {}
    found = configurable.get(DEPS_KEY)
    return found if isinstance(found, Dependencies) else _DEFAULTS
