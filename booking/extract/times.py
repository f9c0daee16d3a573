"""Clock times said in Russian, in words and in the digit forms SpeechKit's normalizer
writes, as a small grammar over `Scan` tokens.

Forms: «в 15:30», «15.30», «в 15 30», «17 часов 15 минут», «в три часа дня», «пять
пятнадцать», «в час дня», «в полдень», «полпятого» / «пол пятого» / «в половине пятого»,
«в четверть седьмого», «без четверти три» / «без 15 4» / «без десяти пять», relative
«через два часа» / «через полчаса», windows «после шести»; vague parts of day («утром»,
«ближе к вечеру») are reported apart so the dialogue can offer times.

A time without a half of the day is kept as `ClockTime` with `explicit=False`; the salon's
hours decide it later (`resolve`): 5:45 → 17:45 when only that fits, and an hour that
fits both halves, or neither, is returned as options to ask about, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from booking.extract.numbers import word_value
from booking.extract.scan import TIME_PREPS, Scan
from booking.extract.text import tokenize

PART_WORDS = {
    "утра": "morning",
    "утром": "morning",
    "дня": "afternoon",
    "днем": "afternoon",
    "вечера": "evening",
    "вечером": "evening",
    "ночи": "night",
}
_HOUR_UNIT = {"час", "часа", "часов", "часик", "часика", "часиков"}
_MINUTE_UNIT = {"минут", "минуты", "минута", "минуту", "минутки", "минуток", "минуте"}
_HALF = {"половина", "половине", "половину", "половины", "пол"}
_QUARTER = {"четверть"}
_QUARTER_LESS = {"четверти"}
_CLOCK = re.compile(r"^(\d{1,2})[:.](\d{2})$")
_POL = re.compile(r"^пол-?([а-я]+)$")


@dataclass(frozen=True, slots=True)
class ClockTime:
    """A time as said: `explicit` when the half of the day is known (24-h digits, a
    part-of-day word, a half/quarter form resolved by `part`)."""

    hour: int
    minute: int
    explicit: bool
    first: int
    last: int
    negated: bool = False
    relative: datetime | None = None  # «через два часа»: the moment itself
    after: bool = False  # «после шести»: a window, not a start


def _part_after(s: Scan, j: int) -> str | None:
    return PART_WORDS.get(s.norm(j))


def _with_part(hour: int, part: str | None) -> tuple[int, bool]:
    if part is None:
        return hour, hour >= 13 or hour == 0
    if part in {"afternoon", "evening"} and hour < 12:
        return hour + 12, True
    if part == "night" and 5 <= hour < 12:
        return hour + 12, True
    if part == "morning" and hour == 12:
        return 0, True
    return hour, True


def _ordinal_hour(s: Scan, i: int) -> int | None:
    """«пятого» → 5 (the hour being entered)."""
    item = s.num(i)
    if item is not None and 1 <= item.value <= 12 and (item.ordinal or item.digits):
        return item.value
    return None


def _mk(s: Scan, hour: int, minute: int, first: int, last: int, explicit: bool) -> ClockTime:
    part = _part_after(s, last + 1)
    if part is not None:
        hour, explicit = _with_part(hour, part)
        last += 1
    s.claim(first, last)
    after = s.norm(first - 1) == "после"  # «после 17:00», «после шести»: a window
    return ClockTime(hour % 24, minute, explicit, first, last, s.negated(first), after=after)


def _strong_at(s: Scan, i: int, now: datetime | None) -> ClockTime | None:
    """Forms that are clock times whatever surrounds them."""
    n = s.norm(i)
    m = _CLOCK.match(n)
    if m:
        hh, mm = int(m.group(1)), int(m.group(2))
        dotted = "." in n
        if dotted and not (
            s.norm(i - 1) in TIME_PREPS or mm > 12 or hh > 31 or s.norm(i + 1) in PART_WORDS
        ):
            return None  # «25.12» is a date
        if hh > 23 or mm > 59:
            return None
        explicit = hh >= 13 or hh == 0 or m.group(1).startswith("0")
        return _mk(s, hh, mm, i, i, explicit)
    pm = _POL.match(n)
    if pm and pm.group(1) not in {"день", "дня", "часа", "ночь"}:
        w = word_value(pm.group(1))
        if w is not None and w.ordinal and 1 <= w.value <= 12:
            return _mk(s, (w.value - 1) or 12, 30, i, i, False)
    if n in _HALF and (h := _ordinal_hour(s, i + 1)) is not None:
        return _mk(s, (h - 1) or 12, 30, i, s.nums[i + 1].last, False)
    if n in _QUARTER and (h := _ordinal_hour(s, i + 1)) is not None:
        return _mk(s, (h - 1) or 12, 15, i, s.nums[i + 1].last, False)
    if n == "без":
        j, less = i + 1, None
        if s.norm(j) in _QUARTER_LESS:
            less, j = 15, j + 1
        elif (item := s.num(j)) is not None and 1 <= item.value <= 30 and not item.ordinal:
            less, j = item.value, item.last + 1
            if s.norm(j) in _MINUTE_UNIT:
                j += 1
        if less is not None and s.norm(j) == "час":
            return _mk(s, 12, 60 - less, i, j, True)  # «без четверти час» = 12:45
        hour = s.num(j) if less is not None else None
        if hour is not None and not hour.ordinal and 1 <= hour.value <= 24:
            last = hour.last + (s.norm(hour.last + 1) in _HOUR_UNIT)
            h = hour.value - 1
            return _mk(s, h if h else 12, 60 - less, i, last, hour.value > 12)  # type: ignore[operator]
        return None
    if n in {"полдень", "полудня"}:
        return _mk(s, 12, 0, i, i, True)
    if n == "полночь":
        return _mk(s, 0, 0, i, i, True)
    if n == "через" and now is not None:
        return _relative(s, i, now)
    item = s.num(i)
    if (
        item is not None
        and 1 <= item.value <= 59
        and s.norm(item.last + 1) in _MINUTE_UNIT
        and (h := _ordinal_hour(s, item.last + 2)) is not None
        and s.nums[item.last + 2].ordinal
    ):
        # «двадцать пять минут шестого» = 17:25, «в 45 минут пятого» = 16:45
        return _mk(s, (h - 1) or 12, item.value, i, s.nums[item.last + 2].last, False)
    if item is not None and not item.ordinal and s.norm(item.last + 1) in _HOUR_UNIT:
        # «17 часов 15 минут», «в три часа тридцать», «5 часов вечера»
        if s.norm(i - 1) == "через" or item.value > 23:
            return None
        last = item.last + 1
        minute = 0
        mi = s.num(last + 1)
        if mi is not None and not mi.ordinal and mi.value <= 59:
            if s.norm(mi.last + 1) in _MINUTE_UNIT:
                minute, last = mi.value, mi.last + 1
            elif mi.value >= 10 or mi.width == 2:
                minute, last = mi.value, mi.last
        return _mk(s, item.value, minute, i, last, item.value >= 13 or item.value == 0)
    if n == "час" and (s.norm(i - 1) in TIME_PREPS or _part_after(s, i + 1)):
        mi = s.num(i + 1)
        if mi is not None and not mi.ordinal and 10 <= mi.value <= 59:
            return _mk(s, 1, mi.value, i, mi.last, False)  # «в час тридцать»
        return _mk(s, 1, 0, i, i, False)
    return None


def _relative(s: Scan, i: int, now: datetime) -> ClockTime | None:
    """«через два часа», «через час», «через полчаса», «через полтора часа», «через 40 минут»."""
    j, amount = i + 1, None
    if s.norm(j) == "полчаса":
        minutes, last = 30, j
    else:
        if s.norm(j) == "полтора":
            amount, j = 1.5, j + 1
        elif s.norm(j) in {"пару", "пара"}:
            amount, j = 2, j + 1
        elif (item := s.num(j)) is not None and not item.ordinal:
            amount, j = item.value, item.last + 1
        if s.norm(j) in _HOUR_UNIT:
            minutes, last = int((amount or 1) * 60), j
        elif s.norm(j) in _MINUTE_UNIT and amount is not None:
            minutes, last = int(amount), j
        else:
            return None
    at = now + timedelta(minutes=minutes)
    at += timedelta(minutes=(-at.minute) % 5, seconds=-at.second, microseconds=-at.microsecond)
    s.claim(i, last)
    return ClockTime(at.hour, at.minute, True, i, last, s.negated(i), relative=at)


def _weak_at(s: Scan, i: int, bare_ok: bool) -> ClockTime | None:
    """A number that is a time only by its neighbours: «в 5», «в 15 30», «после шести»."""
    item = s.num(i)
    if item is None or item.ordinal or not 0 <= item.value <= 23:
        return None
    prev = s.norm(i - 1)
    after = prev == "после"
    # «в пять-шесть»: the second number of a range is a time like the first
    ranged = i > 0 and (i - 1) in s.used and s.text[s.toks[i - 1].end : s.toks[i].start] == "-"
    anchored = prev in TIME_PREPS or after or ranged or _part_after(s, item.last + 1) is not None
    if prev == "через":
        return None
    mi = s.num(item.last + 1)
    two_part = (
        mi is not None
        and not mi.ordinal
        and mi.value <= 59
        and (mi.width == 2 or (not mi.digits and (mi.value >= 10 or s.norm(mi.first) == "ноль")))
    )
    if not (anchored or bare_ok):
        return None
    minute, last = 0, item.last
    if two_part and mi is not None:
        minute, last = mi.value, mi.last
        if s.norm(mi.first) == "ноль" and (unit := s.num(mi.first + 1)) is not None:
            minute, last = unit.value, unit.last
    if minute == 0 and s.norm(last + 1) == "с" and s.norm(last + 2) in {"половиной", "половинкой"}:
        minute, last = 30, last + 2  # «в пять с половиной»
    return _mk(s, item.value, minute, i, last, item.value >= 13 or item.value == 0)


def find_strong_times(s: Scan, now: datetime | None) -> list[ClockTime]:
    """Clock times whatever their context; they claim their tokens first."""
    out: list[ClockTime] = []
    for i in range(len(s.toks)):
        if s.free(i) and (ct := _strong_at(s, i, now)) is not None:
            out.append(ct)
    return out


def find_weak_times(s: Scan, *, bare_ok: bool) -> list[ClockTime]:
    """Numbers that are times by context, after dates claimed theirs."""
    out: list[ClockTime] = []
    for i in range(len(s.toks)):
        if s.free(i) and (ct := _weak_at(s, i, bare_ok)) is not None:
            out.append(ct)
    return out


def within(t: time, open_: time, close: time) -> bool:
    """Whether a start at `t` is inside opening hours [open, close)."""
    return open_ <= t < close


def resolve(ct: ClockTime, open_: time, close: time) -> tuple[time | None, tuple[time, ...]]:
    """(the time, ()) when certain, else (None, the candidate times to ask about)."""
    if ct.explicit:
        return time(ct.hour, ct.minute), ()
    h = ct.hour
    cands = [time(h, ct.minute)] + ([time(h + 12, ct.minute)] if h < 12 else [])
    inside = [c for c in cands if within(c, open_, close)]
    if len(inside) == 1:
        return inside[0], ()
    return None, tuple(cands)


_VAGUE = {
    "утром": "morning",
    "с утра": "morning",
    "утречком": "morning",
    "пораньше": "morning",
    "до обеда": "morning",
    "на утро": "morning",
    "на вечер": "evening",
    "на вечерок": "evening",
    "ближе к обеду": "afternoon",
    "к обеду": "afternoon",
    "в районе обеда": "afternoon",
    "в первой половине дня": "morning",
    "во второй половине дня": "afternoon",
    "ближе к ночи": "evening",
    "после обеда": "afternoon",
    "днем": "afternoon",
    "в обед": "afternoon",
    "в обеденное время": "afternoon",
    "вечером": "evening",
    "под вечер": "evening",
    "к вечеру": "evening",
    "ближе к вечеру": "evening",
    "вечерком": "evening",
    "попозже": "evening",
}


def parse_part_of_day(text: str) -> str | None:
    """A vague time («после обеда» → "afternoon"), only meaningful when no exact time."""
    low = " " + " ".join(t.norm for t in tokenize(text)) + " "
    found: tuple[int, str] | None = None
    for phrase, part in _VAGUE.items():
        pos = low.rfind(" " + phrase + " ")
        if pos >= 0 and (found is None or pos > found[0]):
            found = (pos, part)
    return found[1] if found else None
