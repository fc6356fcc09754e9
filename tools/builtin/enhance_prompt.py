"""enhance_prompt: a short idea → one detailed image prompt (the local LLM, tools/enhance.py)."""
from __future__ import annotations

import time
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import InjectedToolCallId, tool
from langgraph.types import Command

from tools.deps import dependencies
from tools.enhance import enhance
from tools.specs import ToolSpec
from tools.tools import emit, step_result


@tool
def enhance_prompt(idea: str, tool_call_id: Annotated[str, InjectedToolCallId], config: RunnableConfig) -> Command:
    """Rewrite a short idea into one detailed image prompt (style, lighting, composition), keeping every word of the idea."""
    started = time.perf_counter()
    emit({"event": "step_start", "tool": "enhance_prompt", "input": idea})
    result = enhance(idea, dependencies(config).get_llm())
    content = {"enhanced_prompt": result.prompt, "source": result.source, "attempts": result.attempts}
    return step_result("enhance_prompt", tool_call_id, content, started, {"idea": idea, "enhanced_prompt": result.prompt}, backend=result.source)


SPEC = ToolSpec(
    enhance_prompt, label="write the prompt", produces="prompt", switch="enhance",
    summarize=lambda data: f"enhanced prompt: {data.get('enhanced_prompt')}",
    reply=lambda state, step, note: f"Prompt: {state['enhanced_prompt']}" if state.get("enhanced_prompt") else None,
    simulate=lambda args: {"enhanced_prompt": f"{(args or {}).get('idea', 'the idea')}, detailed", "source": "llm"},
    arguments=lambda ask: {"idea": ask.idea},
)


def register_tools(register) -> None:
    register(SPEC)
