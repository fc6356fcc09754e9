"""The LLM adapter: one small interface over in-process llama.cpp and an OpenAI-compatible server.

Two kinds of call:
- `chat(...)`: plain chat, optionally constrained to a JSON schema (llama.cpp turns the schema into a
  grammar) — used by enhance_prompt and replies.
- `chat_tools(messages, tools)`: standard tool calling for the decision step. A served model
  (ATELIER_LLM_URL: llama.cpp's server with --jinja, llama_cpp.server, vLLM, Ollama) gets the OpenAI
  `tools` with `tool_choice: "auto"` and answers with `tool_calls` or content. The in-process GGUF has no
  tool-call section in its chat template (the packaged SmolLM2's template has none), so it answers with
  grammar-constrained JSON over a schema built from the same tool list: `{"tool": name, "arguments": {...}}`
  or `{"tool": "reply", "message": "..."}`.
`ToolChatModel` wraps either as a LangChain chat model (`bind_tools` + `invoke` → AIMessage.tool_calls).

langchain-community's ChatLlamaCpp is not installed in this environment, so the in-process path is
llama-cpp-python's own create_chat_completion behind the small BaseChatModel below.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Protocol

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

log = logging.getLogger("atelier.llm")


class LLMError(RuntimeError):
    pass


class ChatLLM(Protocol):
    name: str

    def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.2,
             json_schema: dict | None = None, seed: int | None = None) -> str: ...

    def chat_tools(self, messages: list[dict], tools: list[dict], *, max_tokens: int = 200, temperature: float = 0.0,
                   seed: int | None = None) -> dict: ...


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LLMError(f"model returned invalid JSON: {text[:200]!r}") from exc


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


# -- tool calling without a tool-call template: JSON over a schema built from the tool list -----------------
def tool_choice_schema(tools: list[dict]) -> dict:
    """One JSON schema for "call one of these tools with these arguments, or reply": each tool's own
    parameters schema, plus a reply branch. Built from the OpenAI `tools` list, never written by hand."""
    branches = []
    for spec in tools:
        fn = spec["function"]
        params = {k: v for k, v in fn.get("parameters", {"type": "object", "properties": {}}).items() if k in ("type", "properties", "required")}
        # A bound on every string: a small model otherwise repeats itself until max_tokens cuts the JSON.
        params["properties"] = {name: ({**prop, "maxLength": prop.get("maxLength", 160)} if prop.get("type") == "string" else prop)
                                for name, prop in (params.get("properties") or {}).items()}
        branches.append({"type": "object", "properties": {"tool": {"const": fn["name"]}, "arguments": params},
                         "required": ["tool", "arguments"]})
    branches.append({"type": "object", "properties": {"tool": {"const": "reply"}, "message": {"type": "string", "maxLength": 300}},
                     "required": ["tool", "message"]})
    return {"anyOf": branches}


def tools_as_text(tools: list[dict]) -> str:
    """The tool list for a model that only sees text: names, descriptions and argument schemas from the tools."""
    lines = ["Tools (answer {\"tool\": <name>, \"arguments\": {...}} to call one, or {\"tool\": \"reply\", \"message\": ...} to answer in words):"]
    for spec in tools:
        fn = spec["function"]
        props = fn.get("parameters", {}).get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '')}")
    return "\n".join(lines)


def flatten_tool_messages(messages: list[dict], tools: list[dict]) -> list[dict]:
    """OpenAI messages with tool calls and tool results -> plain system/user/assistant text messages, for a
    chat template that knows no tool roles. The tool list goes into the system message."""
    out: list[dict] = []
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role == "system":
            out.append({"role": "system", "content": f"{content}\n\n{tools_as_text(tools)}" if not out else content})
        elif role == "assistant" and m.get("tool_calls"):
            for call in m["tool_calls"]:
                fn = call.get("function", {})
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = fn.get("arguments")
                out.append({"role": "assistant", "content": json.dumps({"tool": fn.get("name"), "arguments": args})})
        elif role == "assistant":
            out.append({"role": "assistant", "content": json.dumps({"tool": "reply", "message": content})})
        elif role == "tool":
            out.append({"role": "user", "content": f"Result of {m.get('name') or 'the tool'}: {content}"})
        else:
            out.append({"role": "user", "content": content})
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": tools_as_text(tools)})
    merged: list[dict] = []
    for m in out:  # some templates insist on alternating roles
        if merged and merged[-1]["role"] == m["role"] == "user":
            merged[-1] = {"role": "user", "content": merged[-1]["content"] + "\n" + m["content"]}
        else:
            merged.append(m)
    return merged


def answer_from_json(text: str) -> dict:
    """{"tool": ..., "arguments": ...} / {"tool": "reply", "message": ...} -> {"content", "tool_calls"}."""
    answer = parse_json(text)
    if not isinstance(answer, dict) or "tool" not in answer:
        raise LLMError(f"model answer has no tool: {text[:200]!r}")
    if answer["tool"] == "reply":
        return {"content": str(answer.get("message") or ""), "tool_calls": []}
    return {"content": "", "tool_calls": [{"id": _call_id(), "name": str(answer["tool"]),
                                           "arguments": json.dumps(answer.get("arguments", {}))}]}


# Memory of the in-process model (benchmarks/memory_footprint.py --llm measures it for the packaged SmolLM2-135M):
# - the KV cache is allocated and zeroed for the whole context at load, so all of it is resident from the start:
#   n_ctx x 30 layers x 3 KV heads x 64 x 2 (K and V) x 2 bytes = 90 MiB at 4096 tokens in f16, 48 MiB in q8_0. A quantised
#   V cache needs llama.cpp's flash attention, which also never materialises the n_ctx x n_ubatch attention matrix.
# - the context stays 4096: the longest decide prompt with four English turns of the 600 characters
#   agent/decision.py keeps is about 2,300 tokens (+ 200 to answer), an enhance of a 4000-character idea 2,200.
KV_CACHE_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # llama_cpp.GGML_TYPE_* values
# f16 by default: its answers are exactly those of before. q8_0 (with flash attention) saves another 42-55 MiB
# (a cold create 765 -> 710 MB) but changes the numerics, and over the 32 rubric ideas one addition then copied
# a pool phrase ("lightning flash"; copied-phrase rate 0 -> 3 %, which tests/integration/test_enhance.py forbids).
DEFAULT_KV_CACHE_TYPE = "f16"
# States of recent prompts, so a decide prompt evaluated before an enhance call is not evaluated again after it.
# A state is the used part of the KV cache (22.5 KiB a token in f16): 64 MiB holds the few prefixes that
# recur (the decision and enhance system prompts) without growing a long-lived server by 256 MiB.
PROMPT_CACHE_BYTES = 64 << 20


class LocalLLM:
    """llama.cpp in this process. One model is shared by every thread; requests queue on a lock instead of
    running concurrently in one llama context (which would crash it)."""

    def __init__(self, model_path: str, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = 0,
                 kv_cache_type: str = DEFAULT_KV_CACHE_TYPE):
        import numpy as np
        from llama_cpp import Llama, LlamaRAMCache

        if kv_cache_type not in KV_CACHE_TYPES:
            raise LLMError(f"unknown KV cache type {kv_cache_type!r}: one of {', '.join(KV_CACHE_TYPES)}")
        started = time.perf_counter()
        self.model_path = model_path
        self.name = f"llama.cpp:{os.path.basename(model_path)}"
        self.n_ctx = n_ctx
        quantised = kv_cache_type != "f16"
        self._llama = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 2,
                            n_gpu_layers=n_gpu_layers, verbose=False, seed=0,
                            type_k=KV_CACHE_TYPES[kv_cache_type], type_v=KV_CACHE_TYPES[kv_cache_type], flash_attn=quantised)
        self.n_ctx = self._llama.n_ctx()  # what llama.cpp made of the request
        if not self._llama._logits_all:
            # llama-cpp-python keeps an n_batch x n_vocab float32 array of logits (512 x 49152 x 4 = 96 MiB here)
            # that only logits_all=True (logprobs) fills; sampling reads llama.cpp's own logits. Unfilled it costs
            # nothing, but every state the prompt cache saves copies its first n_tokens rows (up to 96 MiB a
            # state, never read back as anything but zeros). One row keeps save_state / load_state working.
            self._llama.scores = np.zeros((1, self._llama.n_vocab()), dtype=np.single)
        # Keeps the KV state of recent prompts: the system prompt and few-shot examples are evaluated once,
        # not on every decision step.
        self._llama.set_cache(LlamaRAMCache(capacity_bytes=PROMPT_CACHE_BYTES))
        self._lock = threading.Lock()
        log.info("step=load_llm model=%s n_gpu_layers=%s n_ctx=%d kv_cache=%s seconds=%.2f", self.name, n_gpu_layers,
                 self.n_ctx, kv_cache_type, time.perf_counter() - started)

    @property
    def key(self) -> str:
        return gguf_key(self.model_path)

    def chat(self, messages, *, max_tokens=256, temperature=0.2, json_schema=None, seed=None) -> str:
        kwargs: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        if seed is not None:
            kwargs["seed"] = seed
        with self._lock:
            started = time.perf_counter()
            try:
                out = self._llama.create_chat_completion(**kwargs)
            except ValueError as exc:
                if "exceed context window" not in str(exc):
                    raise
                raise LLMError(f"the prompt does not fit the model's context of {self.n_ctx} tokens ({exc}); "
                               "shorten the conversation or raise ATELIER_LLM_N_CTX") from exc
        choice, usage = out["choices"][0], out.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens", 0)
        if choice.get("finish_reason") == "length" and prompt_tokens + max_tokens > self.n_ctx:
            # llama-cpp-python lowers max_tokens to what is left of the context without a word: say so instead
            # of handing on an answer cut short by the context rather than by the caller's limit.
            raise LLMError(f"the answer was cut at the end of the model's context: {prompt_tokens} prompt tokens + "
                           f"{max_tokens} to answer exceed {self.n_ctx} (ATELIER_LLM_N_CTX)")
        text = choice["message"]["content"] or ""
        log.debug("step=llm model=%s tokens=%s seconds=%.2f", self.name, out.get("usage", {}).get("completion_tokens"), time.perf_counter() - started)
        return text

    def chat_tools(self, messages, tools, *, max_tokens=200, temperature=0.0, seed=None) -> dict:
        """The GGUF's own chat template over flattened messages, the answer constrained to
        tool_choice_schema(tools) by a llama.cpp grammar."""
        text = self.chat(flatten_tool_messages(messages, tools), max_tokens=max_tokens, temperature=temperature,
                         json_schema=tool_choice_schema(tools), seed=0 if seed is None else seed)
        return answer_from_json(text)


class ServerLLM:
    """An OpenAI-compatible server (llama_cpp.server, llama.cpp's server, vLLM, Ollama)."""

    def __init__(self, base_url: str, model: str | None = None, timeout: float = 120.0):
        import httpx

        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model or "default"
        self.name = f"server:{self.base_url}"
        self._client = httpx.Client(timeout=timeout)
        self._served_id: str | None = model

    @property
    def served_id(self) -> str:
        """The id the server gives its model (GET /v1/models), used in requests and as the calibration key."""
        if self._served_id is None:
            self._served_id = served_model_id(self.base_url, client=self._client)
        return self._served_id

    @property
    def key(self) -> str:
        return f"served:{self.served_id}"

    def _post(self, body: dict) -> dict:
        import httpx

        try:
            response = self._client.post(f"{self.base_url}/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise LLMError(f"LLM server {self.base_url} failed: {exc}") from exc

    def chat(self, messages, *, max_tokens=256, temperature=0.2, json_schema=None, seed=None) -> str:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        if seed is not None:
            body["seed"] = seed
        return self._post(body).get("content") or ""

    def chat_tools(self, messages, tools, *, max_tokens=200, temperature=0.0, seed=None) -> dict:
        """Standard OpenAI tool calling: `tools` + tool_choice "auto"; the answer's tool_calls or content."""
        body: dict[str, Any] = {"model": self.model if self.model != "default" else self.served_id, "messages": messages,
                                "tools": tools, "tool_choice": "auto", "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            body["seed"] = seed
        message = self._post(body)
        calls = []
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            args = fn.get("arguments")
            calls.append({"id": call.get("id") or _call_id(), "name": fn.get("name") or "",
                          "arguments": args if isinstance(args, str) else json.dumps(args or {})})
        return {"content": message.get("content") or "", "tool_calls": calls}


# -- model identity for the measured policy (computed without loading the model) -----------------------------
_key_cache: dict[tuple, str] = {}


def gguf_key(path: str | os.PathLike) -> str:
    """gguf:<sha256 of the file, first 16 hex> — the same weights under another name get the same key."""
    stat = os.stat(path)
    cache_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _key_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        _key_cache[cache_key] = f"gguf:{digest.hexdigest()[:16]}"
    return _key_cache[cache_key]


def served_model_id(base_url: str, client=None) -> str:
    import httpx

    url = base_url.rstrip("/")
    url = url if url.endswith("/v1") else url + "/v1"
    try:
        response = (client or httpx).get(f"{url}/models", timeout=10)
        response.raise_for_status()
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data else "default"
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise LLMError(f"LLM server {url} did not list its models: {exc}") from exc


def current_model_key() -> str:
    """The configured model's calibration key, without loading it: served:<id> or gguf:<file hash>."""
    from models.registry import llm_path
    from models.settings import get_settings

    settings = get_settings()
    if settings.llm_url:
        cached = _served_cache.get(settings.llm_url)
        if cached is None or time.monotonic() - cached[1] > 60:  # one /v1/models call a minute, not one per step
            cached = _served_cache[settings.llm_url] = (f"served:{served_model_id(settings.llm_url)}", time.monotonic())
        return cached[0]
    return gguf_key(llm_path())


_served_cache: dict[str, tuple[str, float]] = {}


# -- a LangChain chat model over either adapter ---------------------------------------------------------------
class ToolChatModel(BaseChatModel):
    """LangChain chat model over a ChatLLM: `bind_tools(TOOLS)` converts the @tool objects to OpenAI tool
    schemas (injected arguments hidden), `invoke` returns an AIMessage whose tool_calls carry the model's
    own arguments; arguments that are not JSON land in invalid_tool_calls."""

    llm: Any
    max_tokens: int = 200

    @property
    def _llm_type(self) -> str:
        return "atelier-llama-cpp"

    def bind_tools(self, tools, *, tool_choice: str = "auto", **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, tools: list[dict] | None = None, **kwargs) -> ChatResult:
        from langchain_core.messages import convert_to_openai_messages

        answer = self.llm.chat_tools(convert_to_openai_messages(messages), tools or [], max_tokens=self.max_tokens,
                                     temperature=kwargs.get("temperature", 0.0), seed=kwargs.get("seed", 0))
        calls, invalid = [], []
        for call in answer["tool_calls"]:
            try:
                args = json.loads(call["arguments"] or "{}")
                if not isinstance(args, dict):
                    raise ValueError("arguments are not an object")
                calls.append({"name": call["name"], "args": args, "id": call["id"], "type": "tool_call"})
            except ValueError as exc:
                invalid.append({"name": call["name"], "args": call["arguments"], "id": call["id"], "error": str(exc),
                                "type": "invalid_tool_call"})
        message = AIMessage(content=answer["content"], tool_calls=calls, invalid_tool_calls=invalid)
        return ChatResult(generations=[ChatGeneration(message=message)])


_llm: ChatLLM | None = None
_llm_lock = threading.Lock()


def llm_loaded() -> bool:
    """Whether the process-wide LLM exists yet (the router-only path never loads it)."""
    return _llm is not None


def get_llm() -> ChatLLM:
    """The process-wide LLM: the server when ATELIER_LLM_URL is set, else the in-process GGUF."""
    global _llm
    with _llm_lock:
        if _llm is None:
            from models.registry import llm_path
            from models.settings import get_settings

            settings = get_settings()
            if settings.llm_url:
                _llm = ServerLLM(settings.llm_url)
            else:
                _llm = LocalLLM(str(llm_path()), n_ctx=settings.llm_n_ctx, n_threads=settings.llm_threads,
                                n_gpu_layers=settings.llm_n_gpu_layers)
        return _llm
