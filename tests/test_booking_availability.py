"""Free start times and nearest alternatives (pure functions over busy bookings)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from booking.availability import check, free_starts, nearest
from booking.catalog import Catalog
from booking.models import Booking

TZ = ZoneInfo("Europe/Moscow")
CATALOG = Catalog.from_config(
    {
        "masters": [
            {"name": "Иван"},
            {"name": "Петр", "hours": {"open": "12:00", "close": "18:00"}},
            {"name": "Сергей", "services": ["styling"]},
        ]
    }
)
DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)


def at(h: int, m: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, h, m, tzinfo=TZ)


def busy(master: str, start: datetime, minutes: int = 30) -> Booking:
    return Booking(
        "X", None, "haircut", master, start, start + timedelta(minutes=minutes), "A", "+7"
    )


def test_check_reasons() -> None:
    assert check(CATALOG, [], "haircut", at(15), NOW) == ("Иван", None)
    assert check(CATALOG, [], "haircut", at(9, 0, date(2026, 11, 23)), NOW) == (None, "past")
    assert check(CATALOG, [], "haircut", at(20, 45), NOW) == (None, "closed")
    assert check(CATALOG, [], "haircut", at(20, 30), NOW) == ("Иван", None)
    assert check(CATALOG, [], "haircut_beard", at(20, 30), NOW) == (None, "closed")
    # Per-master hours: Петр works 12–18 only.
    assert check(CATALOG, [], "haircut", at(10), NOW, "Петр") == (None, "closed")
    # Сергей does only styling.
    assert check(CATALOG, [], "haircut", at(15), NOW, "Сергей") == (None, "no_master")


def test_check_picks_the_next_free_master() -> None:
    b = [busy("Иван", at(14, 45))]
    assert check(CATALOG, b, "haircut", at(15), NOW) == ("Петр", None)
    b.append(busy("Петр", at(15)))
    assert check(CATALOG, b, "haircut", at(15), NOW) == (None, "taken")
    assert check(CATALOG, b, "styling", at(15), NOW) == ("Сергей", None)


def test_free_starts_respect_duration_hours_and_bookings() -> None:
    starts = free_starts(CATALOG, [busy("Иван", at(10))], "haircut", DAY, NOW, "Иван")
    times = [o.start for o in starts]
    assert times[0] == at(9) and at(9, 30) in times
    assert at(9, 45) not in times and at(10) not in times and at(10, 15) not in times
    assert at(10, 30) in times
    assert times[-1] == at(20, 30)  # ends exactly at closing
    assert all(o.master == "Иван" for o in starts)


def test_free_starts_not_in_the_past() -> None:
    now = at(14, 5)
    starts = free_starts(CATALOG, [], "haircut", DAY, now, "Иван")
    assert starts[0].start == at(14, 15)


def test_nearest_same_time_other_master_then_both_sides() -> None:
    b = [busy("Иван", at(15))]
    opts = nearest(CATALOG, b, "haircut", at(15), NOW, "Иван")
    assert (opts[0].start, opts[0].master) == (at(15), "Петр")
    assert {o.start for o in opts[1:]} == {at(14, 30), at(15, 30)}
    assert all(o.master == "Иван" for o in opts[1:])


def test_nearest_rolls_over_to_next_day() -> None:
    # Иван is fully booked that day from 19:00; wanted 20:30 → earlier today or tomorrow.
    b = [busy("Иван", at(19), 120)]
    opts = nearest(CATALOG, b, "haircut", at(20, 30), NOW, "Иван")
    assert opts[0].start == at(18, 30)
    assert opts[-1].start == at(20, 30, date(2026, 11, 25))


def test_nearest_with_nothing_free_is_empty() -> None:
    whole_week = [
        busy(m, at(9, 0, DAY + timedelta(days=k)), 12 * 60)
        for k in range(9)
        for m in ("Иван", "Петр")
    ]
    assert nearest(CATALOG, whole_week, "haircut", at(15), NOW, "Иван") == []
