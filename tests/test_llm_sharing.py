"""The one in-process llama.cpp model is shared: concurrent callers queue instead of crashing it."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from agent.decision import DECISION_SCHEMA
from agent.llm import get_llm, parse_json


def test_concurrent_requests_queue_on_the_shared_model():
    llm = get_llm()
    assert get_llm() is llm

    def ask(i):
        return parse_json(llm.chat([{"role": "user", "content": f"Request {i}: a red fox"}], max_tokens=48,
                                   json_schema=DECISION_SCHEMA, seed=i))

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(ask, range(8)))
    assert len(answers) == 8 and all(a["tool"] in DECISION_SCHEMA["properties"]["tool"]["enum"] for a in answers)
