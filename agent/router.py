"""Intent router: the measured safety net under the LLM's tool decisions.

Two layers, both cheap and deterministic:
1. Cue rules for what a sentence's *shape* says and embeddings are bad at: negation ("no 3d"),
   references to the past ("like before", "I made", "last Thursday"), "make it 3d" follow-ups,
   prompt-only requests, and "keep my words" (no enhancement: the cue is cut off before anything else
   reads the request, so "use my words" is not mistaken for a reference to "my" past creations).
2. Everything else is a new idea or chit-chat: MiniLM cosine similarity against labelled examples
   (intent_examples.py) tells which.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from memory import embeddings
from memory.timeparse import split_time

from .intent_examples import EXAMPLES

_NO_3D = re.compile(r"\b(no|without|skip|not|don'?t|do not)\b[^.]{0,25}\b(3d|3-d|model|mesh|glb)\b|\b(image|picture|2d) only\b|\b(only|just)\b[^.]{0,12}\b(image|picture|2d|illustration|wallpaper|poster)\b", re.I)
_3D_WORD = re.compile(r"\b(3d|3-d|mesh|glb|model|sculpt|extrude)\b", re.I)
_REFERENCE = re.compile(r"\b(it|this|that|last|previous|latest|the image|the picture|one)\b", re.I)
_PROMPT_ONLY = re.compile(r"\b(improve|enhance|rewrite|polish|refine|better|more detailed)\b[^.]{0,30}\b(prompt|idea|description)\b|\b(prompt|idea|description)\b[^.]{0,20}\b(only|more detailed|better)\b", re.I)
_PAST = re.compile(
    r"\b(i|we) (made|created|did|generated|drew|had)\b|\b(before|previously|again|earlier|remember)\b|"
    r"\bmy (last|latest|previous|recent|most recent|creations?|models?|images?|pictures?)\b|\bthe (last|previous) (one|creation|image|model|picture)\b|"
    r"\b(still have|my [a-z]+s)\b", re.I)
_RECALL_VERB = re.compile(r"\b(show|find|list|search|pull up|bring back|open|where is|where's|what did|which)\b", re.I)
# "Keep my words": the user wants their prompt sent as written (enhance_prompt is skipped under every policy).
# The whole clause, with its joiners and trailing "exactly / please / as it is", is cut from the prompt.
_KEEP_CUE = (
    r"(?:exactly|precisely|just|word for word) as (?:i|i've|i have) (?:wrote|written|typed|said|put|phrased) (?:it|them|this|that)?"
    r"|(?:use|keep|stick to|stick with|go with) (?:my|these|the) (?:own |exact |original )?(?:words|wording|phrasing|prompt|text)"
    r"|(?:don'?t|do not|dont|please don'?t|no need to|never) (?:change|alter|rewrite|reword|enhance|improve|edit|touch|embellish|expand|modify|tweak)"
    r" (?:my|the|this|that|it|a) ?(?:words|wording|prompt|text|idea|description)?"
    r"|(?:no|without|skip(?: the)?|disable|turn off) (?:prompt )?(?:enhancements?|enhancing|enhancer|rewriting|rewrites?|embellishments?)"
    r"|(?:verbatim|word for word|as[- ]is|unchanged|unedited|literally as written)"
)
_KEEP_WORDS = re.compile(rf"\b(?:{_KEEP_CUE})(?!\w)", re.I)
_KEEP_CLAUSE = re.compile(
    rf"[\s,;:.!\-–—(]*(?:\b(?:and|but|so|please|ok|okay)\b[\s,]*)*\b(?:{_KEEP_CUE})(?!\w)"
    r"(?:[\s,]*\b(?:exactly|precisely|please|as (?:they|it) (?:are|is)|as written|thanks?|thank you)\b)*[\s,;:.!)]*", re.I)


def keeps_words(text: str) -> bool:
    """Whether the request asks for its own words to be used as they are ("use my words", "no enhancement")."""
    return bool(_KEEP_WORDS.search(text or ""))


def without_keep_cue(text: str) -> str:
    """The request without its keep-my-words clause: "a blue umbrella in the rain, use my words exactly" ->
    "a blue umbrella in the rain" (what the image model is sent)."""
    text = text or ""

    def cut(match: re.Match) -> str:  # mid-sentence the clause leaves a comma between what it separated
        return " " if match.start() == 0 or match.end() == len(text) else ", "

    stripped = _KEEP_CLAUSE.sub(cut, text)
    return re.sub(r"\s+", " ", stripped).strip(" ,;:-–—") or text.strip()


_MODIFY = re.compile(r"\bagain (with|as|in)\b|\b(but|except|instead|variation|version of|remix|redo|same [a-z ]+ as|like (the|my|before|that|last)|similar to)\b", re.I)


@dataclass
class Intent:
    name: str
    confidence: float  # best similarity (1.0 for a rule)
    margin: float  # best minus second-best intent
    via: str  # "rule" | "knn"


def cue_intent(text: str) -> str | None:
    text = without_keep_cue(text)
    from tools.specs import TOOL_TABLE  # the tools' own cue words ("caption it"): the intent is named after the tool

    if (cued := TOOL_TABLE.cued(text)) is not None:
        return cued.name
    if _NO_3D.search(text):
        return "image"
    words = text.split()
    if _3D_WORD.search(text) and ((len(words) <= 10 and _REFERENCE.search(text)) or (len(words) <= 5 and not re.search(r"\ban?\b", text, re.I))):
        return "to_3d"
    if _PROMPT_ONLY.search(text):
        return "enhance"
    _, window = split_time(text)
    if window is not None or _PAST.search(text):
        return "remix" if _MODIFY.search(text) else "recall"
    if _RECALL_VERB.search(text) and re.search(r"\bmy\b", text, re.I):
        return "recall"
    return None


class IntentRouter:
    def __init__(self, examples: dict[str, list[str]] | None = None, k: int = 2):
        self.examples = examples or EXAMPLES
        self.k = k
        self._labels: list[str] = []
        self._matrix: np.ndarray | None = None
        self._lock = threading.Lock()

    def _fit(self) -> None:
        with self._lock:
            if self._matrix is None:
                texts, labels = [], []
                for intent, items in self.examples.items():
                    texts += items
                    labels += [intent] * len(items)
                self._labels = labels
                self._matrix = embeddings.embed(texts)

    def classify(self, text: str) -> Intent:
        cue = cue_intent(text)
        if cue:
            return Intent(cue, 1.0, 1.0, "rule")
        self._fit()
        assert self._matrix is not None
        sims = self._matrix @ embeddings.embed([without_keep_cue(text)])[0]
        scores: dict[str, float] = {}
        for intent in self.examples:
            mine = np.sort(sims[[i for i, label in enumerate(self._labels) if label == intent]])[::-1][: self.k]
            scores[intent] = float(mine.mean())
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        (best, best_score), (_, second_score) = ranked[0], ranked[1]
        return Intent(best, best_score, best_score - second_score, "knn")


_router: IntentRouter | None = None


def get_router() -> IntentRouter:
    global _router
    if _router is None:
        _router = IntentRouter()
    return _router
