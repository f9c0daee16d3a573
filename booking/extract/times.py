"""Times of day said in Russian: «в 15:30», «в 3 часа дня», «к десяти утра», «в 11»,
«в полдень», «в половине пятого»; vague parts of day («утром», «после обеда», «вечером»)
are reported separately so the dialogue can ask a clarifying question.

A bare hour 1–8 means afternoon/evening (a salon open 09:00–21:00 hears «в 4» as 16:00).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from booking.extract.text import Token, lemma, negated, tokenize

NUMBER_WORDS = {
    "один": 1,
    "час": 1,
    "два": 2,
    "три": 3,
    "четыре": 4,
    "пять": 5,
    "шесть": 6,
    "семь": 7,
    "восемь": 8,
    "девять": 9,
    "десять": 10,
    "одиннадцать": 11,
    "двенадцать": 12,
    "полдень": 12,
}
# «в половине пятого»: ordinal of the NEXT hour.
ORDINALS = {
    "первый": 1,
    "второй": 2,
    "третий": 3,
    "четвертый": 4,
    "пятый": 5,
    "шестой": 6,
    "седьмой": 7,
    "восьмой": 8,
    "девятый": 9,
    "десятый": 10,
    "одиннадцатый": 11,
    "двенадцатый": 12,
}
PART_WORDS = {
    "утро": "morning",
    "утром": "morning",
    "утра": "morning",
    "день": "afternoon",
    "днем": "afternoon",
    "дня": "afternoon",
    "вечер": "evening",
    "вечером": "evening",
    "вечера": "evening",
    "ночи": "night",
}
_PREPS = {"в", "во", "к", "ко", "на", "около", "часов", "часа", "час", "примерно", "после"}


@dataclass(frozen=True, slots=True)
class TimeMention:
    value: time
    start: int
    end: int
    negated: bool = False


def _part_near(toks: list[Token], j: int) -> str | None:
    for k in (j, j + 1):
        if k < len(toks):
            part = PART_WORDS.get(toks[k].norm)
            if part:
                return part
    return None


def _apply_part(hour: int, part: str | None) -> int:
    if part in {"afternoon", "evening"} and hour < 12:
        return hour + 12
    if part == "morning" and hour == 12:
        return 0
    if part is None and 1 <= hour <= 8:
        return hour + 12
    return hour


def _number_at(toks: list[Token], i: int) -> int | None:
    t = toks[i]
    if t.is_number:
        return int(t.norm)
    return NUMBER_WORDS.get(lemma(t.norm))


def find_times(text: str, *, bare_number_ok: bool = False) -> list[TimeMention]:
    toks = tokenize(text)
    out: list[TimeMention] = []
    for i, t in enumerate(toks):
        prev = toks[i - 1].norm if i else ""
        neg = negated(toks, i)
        if ":" in t.norm or ("." in t.norm and prev in {"в", "к", "на", "около"}):
            hh, mm = (int(x) for x in t.norm.replace(".", ":").split(":"))
            if hh <= 23 and mm <= 59:
                part = _part_near(toks, i + 1)
                hh = _apply_part(hh, part) if part in {"afternoon", "evening"} else hh
                out.append(TimeMention(time(hh, mm), t.start, t.end, neg))
            continue
        if t.norm == "полдень" or (t.norm == "полдня" and prev == "в"):
            out.append(TimeMention(time(12, 0), t.start, t.end, neg))
            continue
        if lemma(t.norm) in {"половина", "пол"} and i + 1 < len(toks):
            nxt = ORDINALS.get(lemma(toks[i + 1].norm))
            if nxt is None and toks[i + 1].is_number:
                nxt = int(toks[i + 1].norm)
            if nxt is not None:
                hour = _apply_part(nxt - 1 or 12, _part_near(toks, i + 2))
                out.append(TimeMention(time(hour % 24, 30), t.start, toks[i + 1].end, neg))
            continue
        n = _number_at(toks, i)
        if n is None or not 0 <= n <= 23:
            continue
        nxt = toks[i + 1].norm if i + 1 < len(toks) else ""
        if t.is_number and lemma(nxt) in {
            "январь",
            "февраль",
            "март",
            "апрель",
            "май",
            "июнь",
            "июль",
            "август",
            "сентябрь",
            "октябрь",
            "ноябрь",
            "декабрь",
            "число",
            "день",
            "неделя",
        }:
            continue
        if prev == "через":
            continue
        hour_word = lemma(nxt) == "час"
        part = _part_near(toks, i + 1 + hour_word)
        anchored = prev in _PREPS or hour_word or part is not None
        if lemma(t.norm) == "час" and prev not in {"в", "к", "около", "на"}:
            continue  # «3 часа»: the unit, not «в час дня»
        if not anchored and not (bare_number_ok and len(toks) <= 3):
            continue
        minutes = 0
        j = i + 1 + hour_word
        if (
            j < len(toks)
            and toks[j].is_number
            and lemma(toks[j + 1].norm if j + 1 < len(toks) else "") in {"минута"}
        ):
            minutes = int(toks[j].norm)
        if minutes > 59:
            continue
        hour = _apply_part(n, part)
        if hour > 23:
            continue
        out.append(TimeMention(time(hour, minutes), t.start, t.end, neg))
    return out


def parse_time(text: str, *, bare_number_ok: bool = False) -> time | None:
    """The last time mentioned that is not denied («нет, не в 3, а в 4» → 16:00)."""
    kept = [m for m in find_times(text, bare_number_ok=bare_number_ok) if not m.negated]
    return kept[-1].value if kept else None


_VAGUE = {
    "утром": "morning",
    "с утра": "morning",
    "пораньше": "morning",
    "после обеда": "afternoon",
    "днем": "afternoon",
    "в обед": "afternoon",
    "вечером": "evening",
    "под вечер": "evening",
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
