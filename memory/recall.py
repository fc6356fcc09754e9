"""recall_similar: meaning (Chroma) + time ("last Thursday") + recency ("like before"), scoped to one user."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .store import CreationView, MemoryStore
from .timeparse import TimeWindow, split_time

# Words that point at "something I made" without describing it: with nothing else left, recall = recency.
_FILLER = set(
    """a an the one ones it this that those these thing things something some like same as before again previous previously
    last latest recent recently earlier my mine i me we our made make created create generated did show find recall remember
    get give bring back up open pull look for of from with to please can could you just another similar kind sort what was
    is were which picture image images model models creation creations render renders 3d item stuff time all any do let's lets
    see want would need earliest newest most""".split()
)


MAX_QUERY_CHARS = 300  # the longest search text the entry points accept (`atelier recall`, GET /creations?q=)


@dataclass
class RecallResult:
    creations: list[CreationView]
    query: str  # the text embedded for meaning search (search_text; "" = by recency)
    window: TimeWindow | None
    mode: str  # "semantic" | "recency"


def descriptive_part(text: str) -> str:
    """The words that describe something; "" when the text only points at "something I made" (recall by recency)."""
    words = re.findall(r"[A-Za-z0-9']+", text.lower())
    return " ".join(w for w in words if w not in _FILLER)


def search_text(text: str) -> str:
    """What recall embeds: the words with the recall words around the description taken off ("show me the ...
    again", "the ... I made"), the words inside it kept. Inside a description the filler words carry meaning: "turtle
    with a town on its back" is a phrase the embedding model knows, "turtle town on its" (every filler word
    dropped, as recall did before) is not, and another record outranked the planted one over 90k records
    (benchmarks/recall_scale.py; docs/memory.md has the held-out check)."""
    words = re.findall(r"[A-Za-z0-9']+", text.lower())
    start, end = 0, len(words)
    while start < end and words[start] in _FILLER:
        start += 1
    while end > start and words[end - 1] in _FILLER:
        end -= 1
    return " ".join(words[start:end])


def recall(store: MemoryStore, text: str, user_id: str, limit: int = 5, now: datetime | None = None,
           min_score: float = 0.15) -> RecallResult:
    if limit < 1 or limit > 100:
        raise ValueError("limit must be between 1 and 100")
    rest, window = split_time(text, now)
    since, until = (window.start, window.end) if window else (None, None)
    if not descriptive_part(rest):
        return RecallResult(store.list(user_id, limit=limit, since=since, until=until), "", window, "recency")
    description = search_text(rest)
    hits = store.semantic(description, user_id, limit=max(limit * 4, 20), since=since, until=until)
    by_id = store.get_many([cid for cid, _ in hits], user_id)
    ranked: list[CreationView] = []
    for cid, score in hits:
        view = by_id.get(cid)
        if view is None or score < min_score:
            continue
        if window and not window.contains(view.created.astimezone(window.start.tzinfo)):
            continue
        view.score = round(score, 4)
        ranked.append(view)
    # In the order of the score each result shows; an equal score (the same words): the newer one first ("the
    # castle" = the castle I made most recently). Rounding to 2 places here once put 0.8149 below 0.8101.
    ranked.sort(key=lambda v: (v.score or 0, v.created_at), reverse=True)
    return RecallResult(ranked[:limit], description, window, "semantic")
