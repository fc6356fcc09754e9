"""Atelier's agent graph: decide picks each step — the LLM by standard tool calling, or the intent router, as
the decision policy says (agent/decision.py; under the default `auto` the model decides only if its measured
accuracy is within 2 points of the router's, so with the packaged 135M model the router decides, and the
router always vetoes impossible calls); tools do the work.

    START → decide ─┬─ tool call → tools ─┬─ enhance_prompt + review on → review → decide
                    │                      └─ otherwise → decide
                    └─ no tool → respond → END
"""
from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from tools.deps import DEPS_KEY, Dependencies
from tools.specs import TOOL_TABLE
from tools.tools import settle_turn

from .nodes import decide, respond, review, route_after_decide, route_after_tools, tool_error_message
from .state import AgentState, check_request_length


def respond_and_settle(state: AgentState, config: RunnableConfig) -> dict:
    """respond, after marking the turn's creation settled (no longer in_progress): every turn ends here."""
    settle_turn(state, config)
    return respond(state, config)


def decide_within_limits(state: AgentState, config: RunnableConfig) -> dict:
    """decide, after the check every path into the graph passes (the CLI, the API server and the studio refuse
    earlier with their own message): the latest user message within ATELIER_MAX_IDEA_CHARS. Raising here fails
    the run before any tool is chosen, so nothing is made or stored; seed, size, steps and user id are checked
    by Configuration, which decide builds first."""
    check_request_length(state.get("messages", []))
    return decide(state, config)


def build_graph(checkpointer=None, *, store=None, llm=None, session=None):
    """The agent graph. `store` (memory.store.MemoryStore), `llm` (a models.llm.ChatLLM, or a callable that
    loads one) and `session` (memory.session.SessionContext) are what its nodes and tools use; each one not
    given is the process-wide default (get_store(), get_llm(), the store's session context), as for the API
    server's module-level `graph` below, which langgraph.json loads and which cannot be handed objects.
    The tools are the tool table's at build time (tools/specs.py)."""
    builder = StateGraph(AgentState)
    builder.add_node("decide", decide_within_limits)
    builder.add_node("tools", ToolNode(TOOL_TABLE.tools(), handle_tool_errors=tool_error_message))
    builder.add_node("review", review)
    builder.add_node("respond", respond_and_settle)
    builder.add_edge(START, "decide")
    builder.add_conditional_edges("decide", route_after_decide, ["tools", "respond"])
    builder.add_conditional_edges("tools", route_after_tools, ["review", "decide"])
    builder.add_edge("review", "decide")
    builder.add_edge("respond", END)
    graph = builder.compile(checkpointer=checkpointer, name="atelier")
    if store is None and llm is None and session is None:
        return graph
    # Pregel.with_config keeps the compiled graph's type; "__" keys never reach checkpoint metadata.
    return graph.with_config(configurable={DEPS_KEY: Dependencies(store=store, llm=llm, session=session)})


# The LangGraph API server (langgraph.json) loads this and supplies its own checkpointer.
graph = build_graph()
