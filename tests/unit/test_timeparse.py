from datetime import UTC, datetime, timedelta, timezone

import pytest

from memory.timeparse import split_time

# Wednesday 2026-11-25 15:00 local (UTC for the test)
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("text,rest,start,end", [
    ("the castle from yesterday", "the castle", datetime(2026, 11, 24), datetime(2026, 11, 25)),
    ("the castle from last thursday", "the castle", datetime(2026, 11, 19), datetime(2026, 11, 20)),
    ("dragons from this morning", "dragons", datetime(2026, 11, 25, 5), datetime(2026, 11, 25, 12)),
    ("the owl on monday", "the owl", datetime(2026, 11, 23), datetime(2026, 11, 24)),
    ("what I made today", "what", datetime(2026, 11, 25), datetime(2026, 11, 26)),
    ("robots from last week", "robots", datetime(2026, 11, 16), datetime(2026, 11, 23)),
    ("the ship from 3 days ago", "the ship", datetime(2026, 11, 22), datetime(2026, 11, 23)),
])
def test_windows(text, rest, start, end):
    got_rest, window = split_time(text, NOW)
    assert got_rest == rest
    assert window.start == start.replace(tzinfo=UTC)
    assert window.end == end.replace(tzinfo=UTC)


def test_two_weeks_ago_is_a_fuzzy_window_around_that_week():
    rest, window = split_time("the lighthouse from two weeks ago", NOW)
    assert rest == "the lighthouse"
    assert window.contains(NOW - timedelta(days=14)) and window.contains(NOW - timedelta(days=11))
    assert not window.contains(NOW - timedelta(days=2)) and not window.contains(NOW - timedelta(days=30))


def test_last_weekday_on_that_weekday_means_a_week_ago():
    _, window = split_time("last wednesday", NOW)
    assert window.start == datetime(2026, 11, 18, tzinfo=UTC)


def test_absolute_dates_use_dateparser():
    rest, window = split_time("the fox from Nov 3", NOW)
    assert rest == "the fox"
    assert window.start == datetime(2026, 11, 3, tzinfo=UTC)


def test_no_time_expression():
    assert split_time("a glowing dragon at sunset", NOW) == ("a glowing dragon at sunset", None)


@pytest.mark.parametrize("text,rest,until_now", [
    ("the fox I made 1000000 days ago", "the fox", False),
    ("the fox I made 99999999999 days ago", "the fox", False),
    ("3000 years ago", "", False),
    ("99999999999 minutes ago", "", False),
    ("the owl from the last 99999999999 weeks", "the owl", True),
    ("castles " + "9" * 5000 + " days ago", "castles", False),  # more digits than int() reads
])
def test_huge_phrases_clamp_to_the_earliest_day_and_say_so(text, rest, until_now):
    got_rest, window = split_time(text, NOW)
    assert got_rest == rest
    assert window.start == datetime(1, 1, 2, tzinfo=UTC)
    assert window.end == (NOW + timedelta(seconds=1) if until_now else datetime(1, 1, 3, tzinfo=UTC))
    assert "earliest date" in window.note and "0001-01-02" in window.note
    window.start.astimezone(timezone(timedelta(hours=-12)))  # representable in any zone
    window.start.astimezone(timezone(timedelta(hours=14)))


def test_a_long_but_representable_phrase_is_not_clamped():
    _, window = split_time("the fox from 2000 years ago", NOW)
    assert window.note is None and window.start.year == 27  # 2000 x 365 days back: the year 27
