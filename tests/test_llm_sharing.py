"""The one in-process llama.cpp model is shared: concurrent callers queue instead of crashing it."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent.llm import get_llm


def test_concurrent_requests_queue_on_the_shared_model():
    llm = get_llm()
    assert get_llm() is llm
    prompts = [f"Name one colour of a {thing}." for thing in ("fox", "sky", "leaf", "rose", "coal", "snow")]

    def ask(prompt):
        return llm.chat([{"role": "user", "content": prompt}], max_tokens=16, temperature=0.0, seed=0)

    sequential = [ask(p) for p in prompts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(ask, prompts))
    # Same answers as one at a time: requests were serialised, no context was shared mid-generation.
    assert concurrent == sequential and all(isinstance(a, str) and a for a in concurrent)
