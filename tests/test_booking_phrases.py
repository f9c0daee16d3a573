"""The date/time grammar against the phrase table (tests/when_phrases.py), plus the
cases it must *not* decide: an hour that fits both halves of the salon's day (or
neither), two different times in one breath, and words it cannot place."""

from __future__ import annotations

from datetime import date, time

import pytest

from booking.extract.when import parse_when

from .when_phrases import NOW, PHRASES

OPEN_9_21 = (time(9), time(21))


def test_the_table_is_big_enough() -> None:
    assert len(PHRASES) >= 150
    assert len({p for p, _, _ in PHRASES}) == len(PHRASES)


@pytest.mark.parametrize(
    ("phrase", "want_date", "want_time"), PHRASES, ids=[p for p, _, _ in PHRASES]
)
def test_phrase(phrase: str, want_date: date | None, want_time: time | None) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=OPEN_9_21)
    assert (got.date, got.time) == (want_date, want_time), got
    assert got.unplaced == ()


@pytest.mark.parametrize(
    ("phrase", "hours", "options"),
    [
        ("в 8", (time(8), time(22)), (time(8), time(20))),
        ("в 9:30", (time(8), time(22)), (time(9, 30), time(21, 30))),
        ("в 10", (time(12), time(20)), (time(10), time(22))),  # fits neither: asked
        ("в полвосьмого", (time(7), time(22)), (time(7, 30), time(19, 30))),
    ],
)
def test_an_hour_that_fits_both_halves_or_neither_is_asked(
    phrase: str, hours: tuple[time, time], options: tuple[time, ...]
) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=hours)
    assert got.time is None
    assert got.time_options == options


def test_explicit_half_of_day_is_never_asked() -> None:
    got = parse_when("в 8 вечера", NOW.date(), hours=(time(8), time(22)))
    assert (got.time, got.time_options) == (time(20), ())


@pytest.mark.parametrize(
    ("phrase", "options"),
    [
        ("в 10 или в 11", (time(10), time(11))),
        ("в 3 или в 4", (time(15), time(16))),
        ("в 10 20 или в 8", (time(10, 20), time(20))),
        ("часов в пять-шесть", (time(17), time(18))),
        ("в три-полчетвёртого", (time(15), time(15, 30))),
    ],
)
def test_two_different_times_are_asked(phrase: str, options: tuple[time, ...]) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=OPEN_9_21)
    assert got.time is None and got.time_options == options


@pytest.mark.parametrize(
    ("phrase", "unplaced"),
    [
        ("в декабре", ("декабре",)),
        ("завтра или послезавтра", ("завтра или послезавтра",)),
        ("на следующей неделе", ("на следующей неделе",)),
        ("хочу на 45", ("45",)),
        ("завтра 25 минут", ("25",)),
        ("давайте первый", ("первый",)),  # a pick, not the 1st: asked when no options
        ("с 3 до 5", ("3", "5")),
        ("не раньше шести", ("шести",)),
        ("в пятом часу", ("пятом",)),
        ("на выходных", ("выходных",)),
        ("в конце недели", ("недели",)),
        ("сегодня-завтра", ("сегодня-завтра",)),
    ],
)
def test_words_it_cannot_place_are_reported(phrase: str, unplaced: tuple[str, ...]) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=OPEN_9_21)
    assert got.unplaced == unplaced


@pytest.mark.parametrize(
    ("phrase", "after"),
    [("после шести", time(18)), ("после 17:00", time(17)), ("после 5 вечера", time(17))],
)
def test_after_is_a_window_not_a_start(phrase: str, after: time) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=OPEN_9_21)
    assert (got.time, got.after) == (None, after)


@pytest.mark.parametrize(
    ("phrase", "part"),
    [
        ("ближе к вечеру", "evening"),
        ("с утра", "morning"),
        ("после обеда", "afternoon"),
        ("сегодня на вечер", "evening"),
        ("к обеду", "afternoon"),
        ("в первой половине дня", "morning"),
        ("во второй половине дня", "afternoon"),
        ("ближе к ночи", "evening"),
    ],
)
def test_vague_parts_of_day(phrase: str, part: str) -> None:
    got = parse_when(phrase, NOW.date(), now=NOW, hours=OPEN_9_21)
    assert (got.time, got.part_of_day) == (None, part)


def test_a_lone_number_is_a_time_only_when_asked() -> None:
    assert parse_when("11", NOW.date()).time is None
    assert parse_when("11", NOW.date(), bare_ok=True).time == time(11)
    assert parse_when("пять пятнадцать", NOW.date(), bare_ok=True).time == time(17, 15)
