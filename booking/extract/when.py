"""Date and time of one utterance together, in the order that keeps numbers honest.

1. Forms that are clock times whatever surrounds them («полпятого», «без 15 4»,
   «17 часов 15 минут», «15:30», «через два часа») claim their tokens;
2. dates claim theirs («3-е декабря», «двадцать пятого», «в воскресенье»);
3. numbers that are times only by context («в 5», «в 15 30») come last.

So «на 3-е декабря» never leaves a «3» for the time, and «в половине пятого» never
becomes the 5th. Whatever number, weekday or month word is still unclaimed is returned in
`unplaced`; the dialogue asks about it rather than use a fragment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from booking.extract.dates import VAGUE_DAY, find_dates, unplaced_date_words
from booking.extract.scan import Scan
from booking.extract.times import (
    ClockTime,
    find_strong_times,
    find_weak_times,
    parse_part_of_day,
    resolve,
)

# Small cardinal words that are rarely about time («одну стрижку», «два вопроса»).
_NOT_SLOT_WORDS = {"один", "одна", "одну", "одно", "одного", "одной", "ноль"}


_CORRECTION = {"нет", "ой", "лучше", "точнее", "вернее", "а", "давайте", "хотя", "нет-нет"}


def _corrected(s: Scan, left: int, right: int) -> bool:
    """Whether the words between two mentions correct the first («в 3, нет, в 4»)."""
    return any(s.norm(k) in _CORRECTION for k in range(left + 1, right))


@dataclass(frozen=True, slots=True)
class When:
    """What an utterance says about when: settled values, options to ask about, and
    the slot-like words nothing used."""

    date: date | None = None
    time: time | None = None
    time_options: tuple[time, ...] = ()
    after: time | None = None  # «после шести»: a window start
    part_of_day: str | None = None
    unplaced: tuple[str, ...] = ()
    only_date_unsure: bool = False  # every unplaced word is about the day, not the time


def parse_when(
    text: str,
    today: date,
    *,
    now: datetime | None = None,
    hours: tuple[time, time] = (time(9), time(21)),
    bare_ok: bool = False,
    skip_ordinals: bool = False,
) -> When:
    """Parse `text` (phone and name already blanked out). `bare_ok`: a lone number is a
    time (the bot just asked for one). `skip_ordinals`: ordinals are a pick among offered
    options («второй»), not days."""
    s = Scan.of(text)
    for i in range(len(s.toks) - 2):
        # «в первой половине дня»: a part of the day (below), not the 1st
        if s.norm(i) in {"первой", "второй"} and s.norm(i + 1) in {"половине", "половины"}:
            if s.norm(i + 2) == "дня":
                s.claim(i, i + 2)
    if skip_ordinals:
        for item in list(s.nums.values()):
            if item.ordinal and not item.digits and item.value <= 3:
                s.claim(item.first, item.last)
    strong = find_strong_times(s, now)
    dates = find_dates(s, today)
    weak = find_weak_times(s, bare_ok=bare_ok and len(s.toks) <= 4)
    times: list[ClockTime] = sorted(strong + weak, key=lambda c: c.first)
    kept_dates = [d for d in dates if not d.negated]
    kept_times = [c for c in times if not c.negated]
    unsure: list[str] = []
    if len({m.value for m in kept_dates}) > 1 and not _corrected(
        s, kept_dates[-2].last, kept_dates[-1].first
    ):
        unsure.append(
            s.text[
                s.span(kept_dates[0].first, kept_dates[-1].last)[0] : s.span(
                    kept_dates[0].first, kept_dates[-1].last
                )[1]
            ]
        )
        kept_dates = []
    d = kept_dates[-1].value if kept_dates else None
    t: time | None = None
    options: tuple[time, ...] = ()
    after: time | None = None
    if len({(c.hour, c.minute) for c in kept_times}) > 1 and not _corrected(
        s, kept_times[-2].last, kept_times[-1].first
    ):
        # «в 10 или в 8»: two different times and no correction between them: ask.
        cands: list[time] = []
        for c in kept_times:
            one, opts = resolve(c, *hours)
            cands += [one] if one else list(opts)
        return When(d, None, tuple(dict.fromkeys(cands)), None, None, tuple(unsure), bool(unsure))
    if kept_times:
        last = kept_times[-1]
        if last.relative is not None:
            t = last.relative.time().replace(second=0, microsecond=0)
            d = d or last.relative.date()
        else:
            t, options = resolve(last, *hours)
            if last.after:
                after, t, options = t or (options[-1] if options else None), None, ()
    numbers = [
        s.toks[item.first].text if item.first == item.last else s.text[item.start : item.end]
        for i, item in s.nums.items()
        if i not in s.used and s.toks[i].norm not in _NOT_SLOT_WORDS
    ]
    day_words = [*unplaced_date_words(s), *s.unplaced, *unsure]
    if d is not None:  # «в субботу на выходных»: the vague words agree with the date
        day_words = [w for w in day_words if w.casefold() not in VAGUE_DAY]
    part = None if (t or options) else parse_part_of_day(text)
    only_date = bool(day_words) and not numbers
    return When(d, t, options, after, part, tuple(numbers + day_words), only_date)


def parse_date(text: str, today: date) -> date | None:
    """Just the date of `text` (the last one not denied)."""
    return parse_when(text, today).date


def parse_time(
    text: str, *, bare_number_ok: bool = False, hours: tuple[time, time] = (time(9), time(21))
) -> time | None:
    """Just the settled time of `text` in a salon open `hours` (None when ambiguous)."""
    return parse_when(text, date(2000, 1, 1), hours=hours, bare_ok=bare_number_ok).time
