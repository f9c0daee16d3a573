"""Dates said in Russian relative to the call's local date.

Covers what callers say and SpeechKit normalizes: «сегодня», «завтра», «послезавтра»,
«в пятницу» / «в следующую пятницу», «15 декабря», «15-го», «через неделю»,
«через 3 дня», «25.12». A small deterministic parser: faster and more predictable here
than a general one, and every form is unit-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from booking.extract.text import Token, fold, lemma, negated, tokenize

MONTHS = {
    "январь": 1,
    "февраль": 2,
    "март": 3,
    "апрель": 4,
    "май": 5,
    "июнь": 6,
    "июль": 7,
    "август": 8,
    "сентябрь": 9,
    "октябрь": 10,
    "ноябрь": 11,
    "декабрь": 12,
}
WEEKDAYS = {
    "понедельник": 0,
    "вторник": 1,
    "среда": 2,
    "четверг": 3,
    "пятница": 4,
    "суббота": 5,
    "воскресенье": 6,
}
_RELATIVE = {"сегодня": 0, "завтра": 1, "послезавтра": 2}
_COUNT_WORDS = {
    "один": 1,
    "два": 2,
    "три": 3,
    "четыре": 4,
    "пять": 5,
    "шесть": 6,
    "семь": 7,
    "пара": 2,
}
_DOTTED = re.compile(r"(?<![\d:])(\d{1,2})\.(\d{1,2})(?:\.(\d{2,4}))?(?![\d:])")


@dataclass(frozen=True, slots=True)
class DateMention:
    value: date
    start: int
    end: int
    negated: bool = False


def _month_of(tok: Token) -> int | None:
    return MONTHS.get(lemma(tok.norm)) or MONTHS.get(tok.norm)


def _future_day_of_month(today: date, day: int, month: int | None) -> date | None:
    """The next date with this day (and month) on or after today."""
    try:
        if month is not None:
            d = date(today.year, month, day)
            return d if d >= today else date(today.year + 1, month, day)
        d = date(today.year, today.month, day)
        if d >= today:
            return d
        m = today.month % 12 + 1
        return date(today.year + (today.month == 12), m, day)
    except ValueError:
        return None


def find_dates(text: str, today: date) -> list[DateMention]:
    toks = tokenize(text)
    out: list[DateMention] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        lem = lemma(t.norm)
        neg = negated(toks, i)
        if t.norm in _RELATIVE:
            out.append(DateMention(today + timedelta(days=_RELATIVE[t.norm]), t.start, t.end, neg))
        elif lem in WEEKDAYS:
            wd = WEEKDAYS[lem]
            ahead = (wd - today.weekday()) % 7
            prev = toks[i - 1].norm if i else ""
            if prev in {"следующий", "следующую", "следующее", "следующая"} or (
                i >= 2 and lemma(toks[i - 1].norm) == "следующий"
            ):
                # «в следующую пятницу»: that weekday of next calendar week.
                start_next_week = today + timedelta(days=7 - today.weekday())
                d = start_next_week + timedelta(days=wd)
            else:
                d = today + timedelta(days=ahead or 7)
                if ahead == 0 and prev in {"эту", "этот", "это", "сегодня"}:
                    d = today
            out.append(DateMention(d, t.start, t.end, neg))
        elif t.norm == "через" and i + 1 < len(toks):
            n, j = 1, i + 1
            if toks[j].is_number:
                n, j = int(toks[j].norm), j + 1
            elif lemma(toks[j].norm) in _COUNT_WORDS:
                n, j = _COUNT_WORDS[lemma(toks[j].norm)], j + 1
            if j < len(toks):
                unit = lemma(toks[j].norm)
                days = {"день": 1, "неделя": 7, "сутки": 1}.get(unit)
                if unit == "день" and j == i + 1:
                    days, n = 2, 1  # «через день» = the day after tomorrow
                if days:
                    out.append(
                        DateMention(today + timedelta(days=n * days), t.start, toks[j].end, neg)
                    )
                    i = j
        elif t.is_number and 1 <= int(t.norm) <= 31:
            # «15 декабря», «15-го декабря», «на 15-е», «15 числа»
            j = i + 1
            if j < len(toks) and toks[j].norm in {"го", "е", "ого"}:
                j += 1
            month = _month_of(toks[j]) if j < len(toks) else None
            prev = toks[i - 1].norm if i else ""
            after = text[t.end : t.end + 3]
            is_day = (
                month is not None
                or (j < len(toks) and lemma(toks[j].norm) == "число")
                or after.startswith(("-го", "-е", "-ое"))
            )
            if (is_day and prev not in {"в", "к", "с", "до"}) or (
                month is not None and prev in {"в", "к", "с", "до"}
            ):
                d = _future_day_of_month(today, int(t.norm), month)
                if d is not None:
                    end = toks[j].end if month is not None else t.end
                    out.append(DateMention(d, t.start, end, neg))
                    i = j if month is not None else i
        i += 1
    for m in _DOTTED.finditer(text):
        day, month = int(m.group(1)), int(m.group(2))
        before = fold(text[max(0, m.start() - 3) : m.start()]).strip()
        if before.endswith((" в", " к")) or before in {"в", "к"} or not 1 <= month <= 12:
            continue  # «в 15.30» is a time
        year = m.group(3)
        try:
            if year:
                y = int(year) + (2000 if len(year) == 2 else 0)
                d = date(y, month, day)
            else:
                d2 = _future_day_of_month(today, day, month)
                if d2 is None:
                    continue
                d = d2
        except ValueError:
            continue
        out.append(DateMention(d, m.start(), m.end()))
    out.sort(key=lambda d: d.start)
    return out


def parse_date(text: str, today: date) -> date | None:
    """The last date mentioned that is not denied («не завтра, а послезавтра»)."""
    kept = [d for d in find_dates(text, today) if not d.negated]
    return kept[-1].value if kept else None
