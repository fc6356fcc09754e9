"""The in-process model's memory settings (models/llm.py LocalLLM), on the packaged SmolLM2-135M GGUF:
the q8_0 KV cache really is in use, the prompt cache's saved states carry no copy of llama-cpp-python's unused
logits array and are still reused, and a prompt or an answer that does not fit the context fails with a clear
LLMError instead of being cut short."""
from __future__ import annotations

import llama_cpp
import pytest

from models.llm import KV_CACHE_TYPES, LLMError, LocalLLM
from models.registry import llm_path

QUESTION = [{"role": "user", "content": "Name one colour of a fox."}]
OTHER = [{"role": "user", "content": "Name one animal that lives in the sea."}]


def _state_bytes(llm: LocalLLM) -> int:
    return llama_cpp.llama_state_get_size(llm._llama._ctx.ctx)


def test_a_q8_0_kv_cache_holds_the_same_prompt_in_about_half_the_bytes_of_f16():
    sizes = {}
    for kind in ("f16", "q8_0"):
        llm = LocalLLM(str(llm_path()), n_ctx=512, n_threads=1, kv_cache_type=kind)
        llm.chat(QUESTION, max_tokens=4, temperature=0.0, seed=0)
        sizes[kind] = _state_bytes(llm)  # the used KV cells + the output buffer
    # q8_0 stores 34 bytes per 32 values where f16 stores 64
    assert 0.45 < sizes["q8_0"] / sizes["f16"] < 0.7, sizes


def test_saved_prompt_states_carry_no_logits_array_and_are_reused():
    llm = LocalLLM(str(llm_path()), n_ctx=1024, n_threads=1)
    first = llm.chat(QUESTION, max_tokens=12, temperature=0.0, seed=0)
    llm.chat(OTHER, max_tokens=12, temperature=0.0, seed=0)  # the live context now holds another prompt
    states = list(llm._llama.cache.cache_state.values())
    assert len(states) == 2
    n_vocab = llm._llama.n_vocab()
    # without the one-row array each state would copy n_tokens x n_vocab float32 (~200 KiB a token here)
    assert all(state.scores.nbytes <= n_vocab * 4 for state in states), [s.scores.shape for s in states]
    loads = []
    real_load = llm._llama.load_state
    llm._llama.load_state = lambda state: (loads.append(state.n_tokens), real_load(state))[1]
    again = llm.chat(QUESTION, max_tokens=12, temperature=0.0, seed=0)
    assert loads, "the first prompt's saved state was not loaded back"
    assert again == first  # a restored state answers as the evaluated prompt did


def test_a_prompt_longer_than_the_context_fails_with_a_clear_error():
    llm = LocalLLM(str(llm_path()), n_ctx=256, n_threads=1)
    long_prompt = [{"role": "user", "content": "Describe this scene: " + "a red fox in the snow, " * 80}]
    with pytest.raises(LLMError, match=r"does not fit the model's context of 256 tokens.*ATELIER_LLM_N_CTX"):
        llm.chat(long_prompt, max_tokens=8, temperature=0.0)


def test_an_answer_cut_by_the_context_end_fails_instead_of_coming_back_short():
    llm = LocalLLM(str(llm_path()), n_ctx=256, n_threads=1)  # llama.cpp's smallest context
    # ~220 prompt tokens, and an answer (digits, one token each) that does not stop by itself
    counting = [{"role": "user", "content": "Remember: " + "fox, owl, cat, " * 30 + "Now count from one to one hundred."}]
    with pytest.raises(LLMError, match=r"cut at the end of the model's context: \d+ prompt tokens \+ 80 to answer exceed 256"):
        llm.chat(counting, max_tokens=80, temperature=0.0, seed=0)
    # an answer that stops at the caller's own limit, inside the context, is not refused
    assert llm.chat(counting, max_tokens=6, temperature=0.0, seed=0).strip()


def test_an_unknown_kv_cache_type_is_refused_before_loading():
    with pytest.raises(LLMError, match=r"unknown KV cache type 'q5'.*f16, q8_0"):
        LocalLLM(str(llm_path()), kv_cache_type="q5")
    assert set(KV_CACHE_TYPES) == {"f16", "q8_0", "q4_0"}
