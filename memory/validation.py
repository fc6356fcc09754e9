"""What Atelier accepts from outside — user ids, thread ids, idea text, and the numbers of a run — in one place.

Every entry point (the CLI, the LangGraph API server, the studio, the graph itself through
agent.configuration.Configuration) calls these functions, so a limit is written once. It lives in memory/, the
lowest layer that needs it (the store refuses bad user ids too); nothing here imports anything of Atelier's.

Rules:
  * user ids and thread ids: 1-128 characters after trimming spaces, no control characters (C0, DEL, C1),
    no lone surrogates (a command-line argument that was not valid UTF-8), no line/paragraph separators or
    bidirectional overrides (they rewrite how a terminal or log shows the text); a user id may not start with
    '~' (reserved: the API server's "no identity" marker).
  * ideas: ANSI escape sequences and control characters other than newline and tab are stripped (never
    refused: a pasted colour code should not cost the user their request), then 1..max_chars characters.
  * seed: an integer in 0..2**63-1 — the range every place a seed travels agrees on: the checkpoint
    serialiser (msgpack: -2**63..2**64-1), orjson on the API (the same), SQLite's INTEGER / Postgres' BIGINT
    (signed 64-bit) and torch.Generator.manual_seed (0..2**64-1). A backend that needs fewer bits reduces it.
  * creation ids: 1-64 ASCII letters and digits (memory.models.new_id makes 16 hex digits; imported ones may be
    longer). Anything else can never name a creation, so callers answer it like an unknown id (404, "no creation").
  * width / height: integers in 64..2048 (SIZE_MIN..SIZE_MAX); steps: an integer in 1..200 (None = the
    backend's default).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

USER_ID_MAX_CHARS = 128
SEED_MIN, SEED_MAX = 0, 2**63 - 1
SIZE_MIN, SIZE_MAX = 64, 2048
STEPS_MIN, STEPS_MAX = 1, 200
RESERVED_USER_PREFIX = "~"
# The one creation-id rule. \Z, not $: "$" also matches before a trailing newline; .match and .fullmatch agree.
CREATION_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and any other two-character ESC sequence.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


class InvalidInput(ValueError):
    """Input that Atelier refuses; the message names the field and the rule, and never echoes control characters."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field


def _unsafe(ch: str) -> bool:
    """Characters that change how text is shown (or are not text at all) rather than being shown."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI


def shown(value: Any, limit: int = 40) -> str:
    """A safe, short rendering of a refused value for an error message: unsafe characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch.encode("unicode_escape", "backslashreplace").decode("ascii") if _unsafe(ch) else ch for ch in text)
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def validate_identifier(value: Any, field: str = "user id", *, reserved_prefix: str | None = RESERVED_USER_PREFIX) -> str:
    """The one rule for user ids (and, with reserved_prefix=None, thread ids): the trimmed value, or InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidInput(field, "is empty")
    if len(value) > USER_ID_MAX_CHARS:
        raise InvalidInput(field, f"is {len(value)} characters long; the limit is {USER_ID_MAX_CHARS}")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise InvalidInput(field, "is not valid UTF-8 text")
    if any(_unsafe(ch) for ch in value):
        raise InvalidInput(field, f"contains control characters: {shown(value)}")
    if reserved_prefix and value.startswith(reserved_prefix):
        raise InvalidInput(field, f"may not start with {reserved_prefix!r}")
    return value


def validate_user_id(value: Any, field: str = "user id") -> str:
    return validate_identifier(value, field)


def validate_thread_id(value: Any, field: str = "thread id") -> str:
    return validate_identifier(value, field, reserved_prefix=None)


def is_creation_id(value: Any) -> bool:
    """Whether value could name a creation (CREATION_ID); callers treat anything else as an unknown creation."""
    return isinstance(value, str) and CREATION_ID.match(value) is not None


def clean_text(text: str) -> str:
    """Text as a user meant it: ANSI escapes and control characters (except newline and tab) removed, line
    breaks normalised to \\n, lone surrogates (undecodable bytes) dropped."""
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "".join(ch for ch in text if ch in "\n\t" or not _unsafe(ch))


def check_length(text: str, max_chars: int, field: str = "the idea") -> str:
    if len(text) > max_chars:
        raise InvalidInput(field, f"is {len(text)} characters long; the limit is {max_chars}")
    return text


def clean_bounded(text: str, max_chars: int, field: str = "the idea") -> str:
    """clean_text, trimmed, at most max_chars characters (InvalidInput otherwise; an empty result is allowed)."""
    if len(text) > 4 * max_chars + 1024:  # far too long whatever cleaning removes: refuse before that work
        raise InvalidInput(field, f"is {len(text)} characters long; the limit is {max_chars}")
    return check_length(clean_text(text).strip(), max_chars, field)


def validate_idea(text: Any, max_chars: int, field: str = "the idea") -> str:
    """A request's text, cleaned and trimmed; InvalidInput when it is empty or longer than max_chars."""
    if not isinstance(text, str):
        raise InvalidInput(field, f"must be text, not {type(text).__name__}")
    cleaned = clean_bounded(text, max_chars, field)
    if not cleaned:
        raise InvalidInput(field, "is empty")
    return cleaned


def _bounded_int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be a whole number between {low} and {high}, not {shown(value)}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}" + (f", not {value}" if len(str(value)) <= 40 else ""))
    return value


def validate_seed(value: Any) -> int | None:
    return None if value is None else _bounded_int(value, "seed", SEED_MIN, SEED_MAX)


def validate_size(width: Any, height: Any) -> tuple[int, int]:
    return _bounded_int(width, "width", SIZE_MIN, SIZE_MAX), _bounded_int(height, "height", SIZE_MIN, SIZE_MAX)


def validate_steps(value: Any) -> int | None:
    return None if value is None else _bounded_int(value, "steps", STEPS_MIN, STEPS_MAX)


def parse_bounded_int(text: str | None, field: str, default: int, low: int, high: int) -> int:
    """A query-string integer (?limit=, ?offset=): the default when absent, else InvalidInput unless low..high."""
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[+-]?\d{1,19}", text.strip()):
        raise InvalidInput(field, f"must be a whole number between {low} and {high}, not {shown(text)}")
    return _bounded_int(int(text), field, low, high)
