"""Time expressions in recall requests ("yesterday", "last Thursday", "two weeks ago", "this morning").

`split_time(text, now)` returns the text with the time expression removed and a [start, end) window in
the user's local time. Relative forms are matched here because they need a *window*, not a single
instant; absolute dates ("on March 3", "2026-11-02") go to dateparser.

A phrase reaching back past what a datetime can hold ("1000000 days ago", "the last 99999999999 weeks") is
clamped to the earliest representable day, and the window says so in `note`, instead of an OverflowError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a few": 3, "couple of": 2, "few": 3,
}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
PARTS_OF_DAY = {"morning": (5, 12), "afternoon": (12, 17), "evening": (17, 22), "night": (18, 30)}


MAX_DIGITS = 15  # a longer number of days/weeks/... is past any representable date anyway (and int() of 4300+ digits raises)


@dataclass
class TimeWindow:
    start: datetime
    end: datetime
    phrase: str
    note: str | None = None  # set when the phrase was clamped to the representable range

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def _day(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _number(token: str) -> int | None:
    token = token.strip().lower()
    if token.isdigit():
        return int(token) if len(token) <= MAX_DIGITS else 10 ** MAX_DIGITS
    return NUMBER_WORDS.get(token)


_NUM = r"(\d+|a couple of|couple of|a few|few|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"\b{_NUM}\s+(minute|hour|day|week|month|year)s?\s+ago\b", re.I), "ago"),
    (re.compile(r"\b(this|yesterday|last)\s+(morning|afternoon|evening|night)\b", re.I), "part"),
    (re.compile(r"\btonight\b", re.I), "tonight"),
    (re.compile(r"\b(today|yesterday|the day before yesterday)\b", re.I), "day"),
    (re.compile(r"\b(this|last|past|previous)\s+(week|month|year)\b", re.I), "period"),
    (re.compile(rf"\b(?:the\s+)?(?:last|past|previous)\s+{_NUM}\s+(hour|day|week|month)s?\b", re.I), "last_n"),
    (re.compile(r"\b(?:(last|this|on)\s+)?(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I), "weekday"),
    (re.compile(r"\b(earlier today|recently|lately)\b", re.I), "recent"),
]
_ABSOLUTE = re.compile(
    r"\b(?:on\s+|from\s+)?((?:\d{4}-\d{2}-\d{2})|(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?)|(?:\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*(?:\s+\d{4})?))\b",
    re.I,
)


def _window(kind: str, m: re.Match, now: datetime) -> tuple[datetime, datetime] | None:
    today = _day(now)
    if kind == "ago":
        n, unit = _number(m.group(1)), m.group(2).lower()
        if n is None:
            return None
        if unit in ("minute", "hour"):
            delta = timedelta(minutes=n) if unit == "minute" else timedelta(hours=n)
            slack = delta / 2 + timedelta(minutes=30 if unit == "hour" else 5)
            return now - delta - slack, now - delta + slack
        if unit == "day":
            day = today - timedelta(days=n)
            return day, day + timedelta(days=1)
        days = {"week": 7, "month": 30, "year": 365}[unit] * n
        half = {"week": 4, "month": 15, "year": 183}[unit]  # "two weeks ago" is fuzzy: that week, give or take
        center = today - timedelta(days=days)
        return center - timedelta(days=half), min(center + timedelta(days=half), now + timedelta(seconds=1))
    if kind == "part":
        which, part = m.group(1).lower(), m.group(2).lower()
        base = today if which == "this" else today - timedelta(days=1)
        if which == "last" and part == "night":
            base = today - timedelta(days=1)
        h0, h1 = PARTS_OF_DAY[part]
        return base + timedelta(hours=h0), base + timedelta(hours=h1)
    if kind == "tonight":
        return today + timedelta(hours=18), today + timedelta(hours=30)
    if kind == "day":
        word = m.group(1).lower()
        offset = {"today": 0, "yesterday": 1, "the day before yesterday": 2}[word]
        day = today - timedelta(days=offset)
        return day, day + timedelta(days=1)
    if kind == "period":
        which, unit = m.group(1).lower(), m.group(2).lower()
        if unit == "week":
            start = today - timedelta(days=today.weekday())
            return (start, start + timedelta(days=7)) if which == "this" else (start - timedelta(days=7), start)
        if unit == "month":
            start = today.replace(day=1)
            if which == "this":
                return start, (start + timedelta(days=32)).replace(day=1)
            prev = (start - timedelta(days=1)).replace(day=1)
            return prev, start
        start = today.replace(month=1, day=1)
        return (start, start.replace(year=start.year + 1)) if which == "this" else (start.replace(year=start.year - 1), start)
    if kind == "last_n":
        n, unit = _number(m.group(1)), m.group(2).lower()
        if n is None:
            return None
        delta = {"hour": timedelta(hours=n), "day": timedelta(days=n), "week": timedelta(weeks=n), "month": timedelta(days=30 * n)}[unit]
        return now - delta, now + timedelta(seconds=1)
    if kind == "weekday":
        qualifier = (m.group(1) or "").lower()
        target = WEEKDAYS.index(m.group(2).lower())
        back = (today.weekday() - target) % 7
        if qualifier == "last" and back == 0:
            back = 7
        day = today - timedelta(days=back)
        return day, day + timedelta(days=1)
    if kind == "recent":
        if m.group(1).lower() == "earlier today":
            return today, now + timedelta(seconds=1)
        return now - timedelta(days=7), now + timedelta(seconds=1)
    return None


def earliest(now: datetime) -> datetime:
    """The earliest day a window may start: 0001-01-02 in `now`'s zone (a day's margin, so that converting it to
    any other zone stays representable)."""
    return datetime(1, 1, 2, tzinfo=now.tzinfo)


def _clamped(kind: str, m: re.Match, now: datetime) -> TimeWindow | None:
    """The window of a phrase that reaches before the earliest representable day: from that day on ("the last N
    weeks": everything until now; "N days ago": that first day), with a note that says so."""
    start = earliest(now)
    if kind == "last_n":
        end = now + timedelta(seconds=1)
    elif kind == "ago":
        end = start + timedelta(days=1)
    else:
        return None
    note = (f"'{m.group(0)[:60]}' reaches before the earliest date that can be represented; "
            f"searched from {start.date().isoformat()} instead")
    return TimeWindow(start, end, m.group(0), note)


def split_time(text: str, now: datetime | None = None) -> tuple[str, TimeWindow | None]:
    """Remove the first time expression from text and return (rest, window)."""
    now = now or datetime.now().astimezone()
    for pattern, kind in _PATTERNS:
        m = pattern.search(text)
        if m:
            try:
                window = _window(kind, m, now)
                found = TimeWindow(window[0], window[1], m.group(0)) if window else None
                if found and found.start < earliest(now):
                    found = _clamped(kind, m, now)
            except OverflowError:  # timedelta or datetime past year 1 / 9999
                found = _clamped(kind, m, now)
            if found:
                rest = (text[: m.start()] + text[m.end():]).strip()
                return _tidy(rest), found
    m = _ABSOLUTE.search(text)
    if m:
        import dateparser

        parsed = dateparser.parse(m.group(1), settings={"PREFER_DATES_FROM": "past", "RETURN_AS_TIMEZONE_AWARE": True,
                                                         "RELATIVE_BASE": now.replace(tzinfo=None)})
        if parsed:
            day = _day(parsed.astimezone(now.tzinfo))
            rest = (text[: m.start()] + text[m.end():]).strip()
            return _tidy(rest), TimeWindow(day, day + timedelta(days=1), m.group(0))
    return text.strip(), None


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\b(from|on|of|in|made|i made|that i made)\s*$", "", text.strip(), flags=re.I)
    return text.strip(" ,.;:-")
