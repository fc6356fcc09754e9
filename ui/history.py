"""Creation history for one user: newest first, search by meaning and time, one creation with its lineage.

Plain synchronous functions over memory.store / memory.recall (the app runs them in a worker thread).
Every read is scoped to the user: another user's id finds nothing.
"""
from __future__ import annotations

import re

from memory.recall import recall
from memory.store import get_store
from memory.validation import is_creation_id

from . import views

PAGE = 12


def page(user: str, offset: int = 0, limit: int = PAGE) -> dict:
    offset = max(0, int(offset))
    store = get_store()
    rows = store.list(user, limit=limit + 1, offset=offset)
    total = store.count(user)
    title = f"Your creations ({total})" if total else "No creations yet — describe an idea to make your first one."
    return views.history_props(rows[:limit], title=title, mode="history", offset=offset, has_more=len(rows) > limit)


def search(user: str, query: str, limit: int = PAGE) -> dict:
    query = (query or "").strip()[:300]
    if not query:
        return page(user)
    result = recall(get_store(), query, user, limit=limit)
    return views.history_props(result.creations, title=views.recall_title(query, result), query=query, mode="search")


def detail(user: str, creation_id: str) -> dict | None:
    """Creation.jsx props for one creation, with what it remixes and what remixes it."""
    if not is_creation_id(creation_id):
        return None
    store = get_store()
    view = store.get(creation_id, user_id=user)
    if view is None:
        return None
    parent = store.get(view.parent_id, user_id=user) if view.parent_id else None
    children = [c for c in store.children(view.id) if c.user_id == user]
    return views.creation_props(view, detail=True, parent=parent, children=children)


def creation(user: str, creation_id: str, notes: list[str] | None = None, status: str | None = None) -> dict | None:
    if not is_creation_id(creation_id):
        return None
    view = get_store().get(creation_id, user_id=user)
    if view is None:
        return None
    parent = get_store().get(view.parent_id, user_id=user) if view.parent_id else None
    return views.creation_props(view, parent=parent, notes=notes or [], status=status)


def views_of(user: str, ids: list[str]) -> list:
    """The user's creations with these ids, in this order (others' ids find nothing)."""
    found = get_store().get_many([i for i in ids if is_creation_id(i)], user)
    return [found[i] for i in ids if i in found]


def remix_request(user: str, creation_id: str, change: str) -> str | None:
    """The request text that remixes a creation: the agent recalls it by these words and applies the change."""
    view = get_store().get(creation_id, user_id=user) if is_creation_id(creation_id) else None
    return None if view is None else remix_text(view.original_prompt, change)


def remix_text(original_prompt: str, change: str) -> str:
    """The words of a remix request (in-process and client mode alike): the recall cue, then the change."""
    change = re.sub(r"\s+", " ", (change or "").strip())[:300].rstrip(" .")
    change = re.sub(r"^but\s+", "", change, flags=re.I) or "as a new variation"
    return f"Remix the one I made before, “{original_prompt}”, but {change}"
