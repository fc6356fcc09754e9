"""The LLM adapter: one small interface over in-process llama.cpp and an OpenAI-compatible llama.cpp server.

Both speak chat messages and can constrain the answer to a JSON schema (llama.cpp turns the schema into a
grammar), which is how a 135M model still produces well-formed decisions and prompts.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Protocol

log = logging.getLogger("atelier.llm")


class LLMError(RuntimeError):
    pass


class ChatLLM(Protocol):
    name: str

    def chat(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.2,
             json_schema: dict | None = None, seed: int | None = None) -> str: ...


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LLMError(f"model returned invalid JSON: {text[:200]!r}") from exc


class LocalLLM:
    """llama.cpp in this process. One model is shared by every thread; requests queue on a lock instead of
    running concurrently in one llama context (which would crash it)."""

    def __init__(self, model_path: str, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = 0):
        from llama_cpp import Llama

        started = time.perf_counter()
        self.model_path = model_path
        self.name = f"llama.cpp:{os.path.basename(model_path)}"
        self._llama = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 2,
                            n_gpu_layers=n_gpu_layers, verbose=False, seed=0)
        # Keeps the KV state of recent prompts: the system prompt and few-shot examples are evaluated once,
        # not on every decision step.
        from llama_cpp import LlamaRAMCache

        self._llama.set_cache(LlamaRAMCache(capacity_bytes=256 << 20))
        self._lock = threading.Lock()
        log.info("step=load_llm model=%s n_gpu_layers=%s seconds=%.2f", self.name, n_gpu_layers, time.perf_counter() - started)

    def chat(self, messages, *, max_tokens=256, temperature=0.2, json_schema=None, seed=None) -> str:
        kwargs: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        if seed is not None:
            kwargs["seed"] = seed
        with self._lock:
            started = time.perf_counter()
            out = self._llama.create_chat_completion(**kwargs)
        text = out["choices"][0]["message"]["content"] or ""
        log.debug("step=llm model=%s tokens=%s seconds=%.2f", self.name, out.get("usage", {}).get("completion_tokens"), time.perf_counter() - started)
        return text


class ServerLLM:
    """An OpenAI-compatible server (python -m llama_cpp.server), e.g. the llm-service of the deployment."""

    def __init__(self, base_url: str, model: str | None = None, timeout: float = 120.0):
        import httpx

        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model or "default"
        self.name = f"server:{self.base_url}"
        self._client = httpx.Client(timeout=timeout)

    def chat(self, messages, *, max_tokens=256, temperature=0.2, json_schema=None, seed=None) -> str:
        import httpx

        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if json_schema is not None:
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        if seed is not None:
            body["seed"] = seed
        try:
            response = self._client.post(f"{self.base_url}/chat/completions", json=body)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise LLMError(f"LLM server {self.base_url} failed: {exc}") from exc


_llm: ChatLLM | None = None
_llm_lock = threading.Lock()


def get_llm() -> ChatLLM:
    """The process-wide LLM: the server when ATELIER_LLM_URL is set, else the in-process GGUF."""
    global _llm
    with _llm_lock:
        if _llm is None:
            from agent.settings import get_settings
            from models.registry import llm_path

            settings = get_settings()
            if settings.llm_url:
                _llm = ServerLLM(settings.llm_url)
            else:
                _llm = LocalLLM(str(llm_path()), n_ctx=settings.llm_n_ctx, n_threads=settings.llm_threads,
                                n_gpu_layers=settings.llm_n_gpu_layers)
        return _llm
