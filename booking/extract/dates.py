"""Dates said in Russian relative to the call's local date, as a grammar over `Scan`.

Forms: «сегодня», «завтра», «послезавтра», «послепослезавтра»; every weekday in every
case («в воскресенье», «во вторник», «к пятнице», «до среды»), with «следующий» /
«на следующей неделе» (next calendar week), «эту» / «на этой неделе» (this week) and
«через неделю» (a week later); «через 3 дня», «через неделю», «через две недели»;
day of month in digits and words («3-е декабря», «на 10-е», «второго декабря»,
«двадцать пятого», «15 числа», «25.12»). Tokens a date uses are claimed, so a number
that belongs to a date never becomes a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from booking.extract.scan import Scan
from booking.extract.text import lemma

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
_WEEKDAY_FORMS: dict[int, tuple[str, ...]] = {
    0: ("понедельник", "понедельника", "понедельнику", "понедельником", "понедельнике"),
    1: ("вторник", "вторника", "вторнику", "вторником", "вторнике"),
    2: ("среда", "среду", "среды", "среде", "средой"),
    3: ("четверг", "четверга", "четвергу", "четвергом", "четверге"),
    4: ("пятница", "пятницу", "пятницы", "пятнице", "пятницей"),
    5: ("суббота", "субботу", "субботы", "субботе", "субботой"),
    6: ("воскресенье", "воскресенья", "воскресенью", "воскресеньем", "воскресение"),
}
WEEKDAY_OF = {form: wd for wd, forms in _WEEKDAY_FORMS.items() for form in forms}
_RELATIVE = {
    "сегодня": 0,
    "завтра": 1,
    "послезавтра": 2,
    "послепослезавтра": 3,
    "после-послезавтра": 3,
}
_NEXT = {"следующий", "следующая", "следующую", "следующее", "следующей", "следующем"}
_THIS = {"этот", "эту", "это", "эта", "этой", "ближайший", "ближайшую", "ближайшее"}
_DAY_UNITS = {"день": 1, "денёк": 1, "денек": 1, "сутки": 1, "неделя": 7, "неделька": 7}
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})$")


@dataclass(frozen=True, slots=True)
class DateMention:
    """A date and the tokens first..last it came from."""

    value: date
    first: int
    last: int
    negated: bool = False


def month_of(word: str) -> int | None:
    """«декабря» → 12."""
    return MONTHS.get(lemma(word)) or MONTHS.get(word)


def _future_day_of_month(today: date, day: int, month: int | None) -> date | None:
    """The next date with this day (and month) on or after today."""
    try:
        if month is not None:
            d = date(today.year, month, day)
            return d if d >= today else date(today.year + 1, month, day)
    except ValueError:
        return None
    # No month said: this month if the day is still ahead, else the next month that
    # has that day («31-го» on 23 November is 31 December).
    y, m = today.year, today.month
    for _ in range(3):
        try:
            d = date(y, m, day)
        except ValueError:
            d = None
        if d is not None and d >= today:
            return d
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return None


def _week_mode(s: Scan) -> str | None:
    """«на следующей неделе» / «на этой неделе» anywhere in the utterance."""
    for i, t in enumerate(s.toks):
        if (
            lemma(t.norm) == "неделя"
            and s.norm(i - 1) in _NEXT | _THIS
            and s.norm(i - 2) != "через"
        ):
            s.claim(i - 1, i)
            if s.norm(i - 2) == "на":
                s.claim(i - 2, i - 2)
            return "next" if s.norm(i - 1) in _NEXT else "this"
    return None


def _weekday(s: Scan, i: int, wd: int, today: date, week: str | None) -> DateMention:
    first, last = i, i
    mode = week
    prev = s.norm(i - 1)
    if prev in _NEXT:
        mode, first = "next", i - 1
    elif prev in _THIS:
        mode, first = "this", i - 1
    ahead = (wd - today.weekday()) % 7
    if mode == "next":
        d = today + timedelta(days=7 - today.weekday() + wd)
    elif mode == "this":
        d = today + timedelta(days=ahead)
    else:
        d = today + timedelta(days=ahead or 7)
    # «в четверг через неделю» / «через неделю в четверг»: that weekday a week later.
    if s.norm(i + 1) == "через" and lemma(s.norm(i + 2)) == "неделя":
        d, last = today + timedelta(days=ahead or 7) + timedelta(days=7), i + 2
    elif s.norm(i - 2) == "через" and lemma(s.norm(i - 1)) == "неделя":
        d, first = today + timedelta(days=ahead or 7) + timedelta(days=7), i - 2
    elif (
        s.norm(i - 3) == "через"
        and lemma(s.norm(i - 2)) == "неделя"
        and s.norm(i - 1) in {"в", "во"}
    ):
        d, first = today + timedelta(days=ahead or 7) + timedelta(days=7), i - 3
    s.claim(first, last)
    return DateMention(d, first, last, s.negated(first))


def _after_n(s: Scan, i: int, today: date) -> DateMention | None:
    """«через 3 дня», «через неделю», «через две недели», «через день», «через месяц»."""
    j, n = i + 1, 1
    item = s.num(j)
    if item is not None and not item.ordinal:
        n, j = item.value, item.last + 1
    elif s.norm(j) in {"пару", "пара"}:
        n, j = 2, j + 1
    if lemma(s.norm(j)) == "месяц" and n == 1:
        d = _future_day_of_month(today.replace(day=1), today.day, today.month % 12 + 1)
        if d is None:
            return None
        s.claim(i, j)
        return DateMention(d, i, j, s.negated(i))
    unit = _DAY_UNITS.get(lemma(s.norm(j)))
    if unit is None:
        return None
    if unit == 1 and j == i + 1:
        n = 2  # «через день» = the day after tomorrow
    s.claim(i, j)
    return DateMention(today + timedelta(days=n * unit), i, j, s.negated(i))


def _day_form(s: Scan, last: int) -> bool:
    """Whether an ordinal without a month is said as a day: «пятого», «на десятое»,
    «3-е», «10-го», «к 5-му»; not «первый» / «второй» (a pick among options) or «2-й»."""
    return s.norm(last).endswith(("ого", "его", "ое", "ее", "го", "е", "му"))


def _day_of_month(s: Scan, i: int, today: date) -> DateMention | None:
    item = s.num(i)
    if item is None or not 1 <= item.value <= 31:
        return None
    j = item.last + 1
    month = month_of(s.norm(j)) if s.free(j) else None
    if month is not None:
        last = j
    elif lemma(s.norm(j)) == "число":
        last = j
    elif item.ordinal and lemma(s.norm(j)) != "час" and _day_form(s, item.last):
        last = item.last
    else:
        return None
    d = _future_day_of_month(today, item.value, month)
    if d is None:
        return None
    s.claim(i, last)
    return DateMention(d, i, last, s.negated(i))


def _week_then_weekday(s: Scan, i: int) -> bool:
    if lemma(s.norm(i + 1)) != "неделя":
        return False
    j = i + 2 + (s.norm(i + 2) in {"в", "во"})
    return s.norm(j) in WEEKDAY_OF


def find_dates(s: Scan, today: date) -> list[DateMention]:
    """Every date mention, claiming its tokens."""
    out: list[DateMention] = []
    week = _week_mode(s)
    for i, t in enumerate(s.toks):
        if not s.free(i):
            continue
        n = t.norm
        if n in _RELATIVE:
            first = i
            days = _RELATIVE[n]
            if n == "завтра" and s.norm(i - 1) == "после" and s.free(i - 1):
                first, days = i - 1, 2  # STT's «после завтра»
            if n == "послезавтра" and s.norm(i - 1) == "после" and s.free(i - 1):
                first, days = i - 1, 3
            s.claim(first, i)
            out.append(DateMention(today + timedelta(days=days), first, i, s.negated(first)))
        elif n in WEEKDAY_OF:
            out.append(_weekday(s, i, WEEKDAY_OF[n], today, week))
        elif n == "через" and _week_then_weekday(s, i):
            continue  # «через неделю в четверг»: the weekday takes the whole phrase
        elif n == "через" and (m := _after_n(s, i, today)) is not None:
            out.append(m)
        elif (m2 := _DOTTED.match(n)) is not None:
            day, month = int(m2.group(1)), int(m2.group(2))
            if 1 <= month <= 12 and (d := _future_day_of_month(today, day, month)) is not None:
                s.claim(i, i)
                out.append(DateMention(d, i, i, s.negated(i)))
        elif (m3 := _day_of_month(s, i, today)) is not None:
            out.append(m3)
    if week is not None and not any(s.norm(m.last) in WEEKDAY_OF for m in out):
        s.unplaced.append("на следующей неделе" if week == "next" else "на этой неделе")
    out.sort(key=lambda m: m.first)
    return out


# Words about the day that name no single date («на выходных», «в конце недели»).
VAGUE_DAY = {"выходные", "выходных", "выходной", "будни", "будний", "будням", "месяце"}
VAGUE_DAY |= {"неделе", "недели", "пн", "вт", "ср", "чт", "пт", "сб", "вс"}


def unplaced_date_words(s: Scan) -> list[str]:
    """Month names, weekday words and vague day words no date used («в декабре»,
    «на выходных»): the dialogue asks for the day rather than skip them."""
    return [
        t.text
        for i, t in enumerate(s.toks)
        if s.free(i) and (month_of(t.norm) or t.norm in WEEKDAY_OF or t.norm in VAGUE_DAY)
    ]
