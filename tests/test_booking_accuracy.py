"""`python -m booking.accuracy`: the classes it sorts calls into, and the whole suite of
dialogues at text level with `use_llm: never` has no wrong booking."""

from __future__ import annotations

from booking.accuracy import classify, main, summary

WANT = {"service": "haircut", "start": "2026-11-24T16:30:00+03:00", "name": "Марина"}
MADE = {**WANT, "id": "X", "master": "Иван"}


def test_classes() -> None:
    assert classify("a", [WANT], [MADE]).klass == "exact"
    assert classify("a", [WANT], []).klass == "none"
    assert classify("a", [], []).klass == "correct_none"
    assert classify("a", [], [MADE]).klass == "wrong"
    other = {**MADE, "start": "2026-11-24T15:00:00+03:00"}
    assert classify("a", [WANT], [other]).klass == "wrong"
    s = summary(
        [classify("a", [WANT], [MADE]), classify("b", [WANT], []), classify("c", [], [MADE])]
    )
    assert s["counts"] == {"exact": 1, "wrong": 1, "none": 1, "correct_none": 0}
    assert s["expecting_a_booking"] == 2
    assert s["booked_exactly_as_asked_pct"] == 50.0


def test_no_dialogue_in_the_suite_ends_in_a_wrong_booking(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "wrong booking 0 " in out
