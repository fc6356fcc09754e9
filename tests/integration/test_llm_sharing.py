"""The one in-process llama.cpp model is shared: concurrent callers queue instead of crashing it."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from models.llm import get_llm


def test_concurrent_requests_queue_on_the_shared_model(monkeypatch):
    llm = get_llm()
    assert get_llm() is llm
    real = llm._llama.create_chat_completion
    active, peak, guard = [0], [0], threading.Lock()

    def watched(**kwargs):  # the real call, with a count of how many run inside llama.cpp at once
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return real(**kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(llm._llama, "create_chat_completion", watched)
    prompts = [f"Name one colour of a {thing}." for thing in ("fox", "sky", "leaf", "rose", "coal", "snow")]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda p: llm.chat([{"role": "user", "content": p}], max_tokens=16, temperature=0.0), prompts))
    assert peak[0] == 1  # serialised
    assert len(answers) == 6 and all(isinstance(a, str) and a.strip() for a in answers)
