"""The llm-service: a real `python -m llama_cpp.server` serving the packaged GGUF on loopback, checked as an
OpenAI-compatible server (streaming, tool calls, JSON-schema answers) and used by the graph via ATELIER_LLM_URL.
Started as the container starts it: with no LLM_CHAT_FORMAT, in the GGUF's own chat template; and once with
LLM_CHAT_FORMAT=chatml-function-calling, the override docs/deployment.md describes.
"""
from __future__ import annotations

import json
import os

import httpx
import pytest

from services import start_api, start_llama_server

pytestmark = pytest.mark.timeout(300)

TOOLS = [{"type": "function", "function": {"name": "text_to_image", "description": "Make an image from a prompt.",
                                           "parameters": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}}]


def _serve(log, chat_format: str | None):
    # Started through docker/llm-entrypoint.sh, as in the llm-service container, which reads LLM_CHAT_FORMAT.
    saved = os.environ.pop("LLM_CHAT_FORMAT", None)
    try:
        if chat_format:
            os.environ["LLM_CHAT_FORMAT"] = chat_format
        return start_llama_server(log=log)
    finally:
        os.environ.pop("LLM_CHAT_FORMAT", None)
        if saved is not None:
            os.environ["LLM_CHAT_FORMAT"] = saved


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    service = _serve(tmp_path_factory.mktemp("llm") / "llama-server.log", None)  # the GGUF's own template
    try:
        yield service
    finally:
        service.stop()


def prompt_tokens(client, messages, tools=None) -> int:
    body = {"model": "atelier", "messages": messages, "max_tokens": 1, "temperature": 0}
    if tools:
        body |= {"tools": tools, "tool_choice": "auto"}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["usage"]["prompt_tokens"]


def requests_served(service) -> int:
    return service.log_tail(10**7).count("POST /v1/chat/completions")


def test_openai_compatible_streaming_and_tool_calls(llm):
    assert "llm-service:" in llm.log_tail(10**7) and "n_gpu_layers=0" in llm.log_tail(10**7)  # the entrypoint's banner
    # No LLM_CHAT_FORMAT: llama_cpp.server formats chats with the template in the GGUF (tokenizer.chat_template).
    assert "chat format from the GGUF" in llm.log_tail(10**7) and "Using gguf chat template" in llm.log_tail(10**7)
    client = httpx.Client(base_url=llm.url, timeout=120)
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["atelier"]
    body = {"model": "atelier", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 12, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) >= 3
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()

    forced = client.post("/v1/chat/completions", json={
        "model": "atelier", "messages": [{"role": "user", "content": "Make an image of a brass owl."}], "max_tokens": 48,
        "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "text_to_image"}}}).json()
    calls = forced["choices"][0]["message"]["tool_calls"]
    assert calls and calls[0]["type"] == "function" and calls[0]["function"]["name"] == "text_to_image"
    assert calls[0]["function"]["arguments"].lstrip().startswith("{")


def test_server_llm_adapter_gets_schema_constrained_json(llm):
    from models.llm import ServerLLM, parse_json

    adapter = ServerLLM(llm.url)  # a bare base URL gets /v1 appended
    schema = {"type": "object", "properties": {"tool": {"type": "string", "enum": ["text_to_image", "recall_similar", "none"]}},
              "required": ["tool"]}
    text = adapter.chat([{"role": "system", "content": "Pick the tool for the request. Answer in JSON."},
                         {"role": "user", "content": "draw a brass owl"}], max_tokens=24, temperature=0, json_schema=schema, seed=0)
    assert parse_json(text)["tool"] in {"text_to_image", "recall_similar", "none"}


def test_graph_uses_the_llm_server(llm, tmp_path):
    """The API server with ATELIER_LLM_URL: enhance and the hybrid decisions go to the llm-service, and the
    in-process model is never loaded."""
    from langgraph_sdk import get_sync_client

    before = requests_served(llm)
    api = start_api(tmp_path, ATELIER_LLM_URL=f"{llm.url}/v1", ATELIER_DECISION_POLICY="hybrid", ATELIER_LOG_LEVEL="INFO")
    try:
        client = get_sync_client(url=api.url, api_key=None, headers={"X-Atelier-User": "alice"}, timeout=300)
        thread = client.threads.create()
        steps = []
        for part in client.runs.stream(thread["thread_id"], "atelier", input={"messages": [{"role": "user", "content": "a brass owl automaton"}]},
                                       stream_mode=["custom"]):
            assert part.event != "error", part.data
            if part.event == "custom" and part.data.get("event") == "step_end":
                steps.append(part.data)
        assert [s["tool"] for s in steps] == ["enhance_prompt", "text_to_image", "image_to_3d"]
        state = client.threads.get_state(thread["thread_id"])["values"]
        assert "owl" in state["enhanced_prompt"].lower()
        log = api.log_tail(10**7)
        assert "step=decide" in log and "source=model" in log or "source=hybrid" in log or "step=enhance" in log, log[-2000:]
        assert "step=load_llm" not in log  # no in-process llama.cpp
    finally:
        api.stop()
    assert requests_served(llm) > before


def test_the_graph_decides_by_tool_calls_from_the_llm_server(llm, data_dir, monkeypatch):
    """Policy model against llama_cpp.server in the GGUF's template: the decide step sends the standard tools, and
    whatever the 135M model calls runs (or the guard vetoes it); the turn ends with a reply. SmolLM2's template
    does not show the model the tools, so it answers in words, and agent/decision.py ends the turn with them."""
    import models.llm as llm_module
    from agent.cli import run_turn, turn_report
    from agent.graph import build_graph
    from memory.session import checkpointer
    from models.settings import reset_settings

    monkeypatch.setenv("ATELIER_LLM_URL", f"{llm.url}/v1")
    reset_settings()
    monkeypatch.setattr(llm_module, "_llm", None)
    before = requests_served(llm)
    config = {"configurable": {"thread_id": "served", "user_id": "u", "decision_policy": "model", "enhance": False}}
    report = turn_report(run_turn(build_graph(checkpointer=checkpointer()), "a paper boat on a pond", config), config)
    called = report["tool_calls"]
    assert called == []  # the model never saw the tools, so it answered in words and the turn ended with them
    assert report["decisions"] and {d["decided_by"] for d in report["decisions"]} <= {"model", "guard"}
    assert report["reply"] and requests_served(llm) > before
    assert not llm_module.llm_loaded() or isinstance(llm_module.get_llm(), llm_module.ServerLLM)  # never in-process



def test_the_gguf_template_hides_the_tools_and_an_explicit_format_shows_them(llm, tmp_path):
    """What LLM_CHAT_FORMAT changes. SmolLM2's own template renders no tools (the prompt the model sees has as many
    tokens with them as without), so a `tools` + tool_choice "auto" request comes back as words; served with
    chatml-function-calling the same request comes back as a standard tool call."""
    from models.llm import ServerLLM

    messages = [{"role": "user", "content": "draw a red fox"}]
    plain = httpx.Client(base_url=llm.url, timeout=300)
    assert prompt_tokens(plain, messages, TOOLS) == prompt_tokens(plain, messages)
    answer = ServerLLM(f"{llm.url}/v1", timeout=300).chat_tools(messages, TOOLS, max_tokens=48, seed=0)
    assert answer["tool_calls"] == [] and answer["content"].strip()

    function_calling = _serve(tmp_path / "llama-server-fc.log", "chatml-function-calling")
    try:
        log = function_calling.log_tail(10**7)
        assert "chat format chatml-function-calling" in log and "Using gguf chat template" not in log
        answer = ServerLLM(f"{function_calling.url}/v1", timeout=300).chat_tools(messages, TOOLS, max_tokens=48, seed=0)
        assert [c["name"] for c in answer["tool_calls"]] == ["text_to_image"], answer
        assert answer["tool_calls"][0]["arguments"].lstrip().startswith("{")
    finally:
        function_calling.stop()
