"""Reply templates from `prompts/` and the Russian formatting they need (dates, times,
word forms), so wording can change without touching code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from booking.availability import Option
from booking.extract.phone import format_phone
from booking.extract.text import morph

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
TEMPLATES_FILE = PROMPTS_DIR / "booking_templates.yaml"

MONTHS_GEN = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)
WEEKDAYS_ACC = (
    "в понедельник",
    "во вторник",
    "в среду",
    "в четверг",
    "в пятницу",
    "в субботу",
    "в воскресенье",
)


def load_templates(path: str | Path | None = None) -> dict[str, Any]:
    """The reply templates YAML (`prompts/booking_templates.yaml` unless `path`)."""
    with open(path or TEMPLATES_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def fmt_time(t: time | datetime) -> str:
    """«16:30»."""
    return f"{t.hour:02d}:{t.minute:02d}"


def fmt_date(d: date, today: date) -> str:
    """«завтра, 24 ноября», «в пятницу, 27 ноября»."""
    base = f"{d.day} {MONTHS_GEN[d.month - 1]}"
    delta = (d - today).days
    if delta == 0:
        return f"сегодня, {base}"
    if delta == 1:
        return f"завтра, {base}"
    if delta == 2:
        return f"послезавтра, {base}"
    if 0 < delta < 7:
        return f"{WEEKDAYS_ACC[d.weekday()]}, {base}"
    return base


@lru_cache(maxsize=256)
def inflect(phrase: str, case: str) -> str:
    """Put the nouns (and names) of a short phrase into `case`: «Иван» → «Ивану»."""
    out: list[str] = []
    for word in phrase.replace("+", "и").split():
        parsed = morph().parse(word)
        p = next((x for x in parsed if "NOUN" in x.tag and "nomn" in x.tag), None)
        form = p.inflect({case}) if p is not None else None
        if form is None:
            out.append(word)
            continue
        w = form.word
        if "Name" in p.tag or (word[:1].isupper() and len(out) == 0 and "Name" in p.tag):
            w = w.capitalize()
        if "ё" in w and "ё" not in word:
            w = w.replace("ё", "е")
        out.append(w)
    return " ".join(out)


def service_acc(name: str) -> str:
    """«на стрижку», «на стрижку и бороду»."""
    return inflect(name, "accs").lower()


def master_dat(name: str) -> str:
    """The master's name in the dative: «Иван» → «Ивану» (к мастеру …)."""
    return inflect(name, "datv")


def join_ru(items: Sequence[str], sep: str = ", ") -> str:
    """«a, b или c» (the last item joined with «или»)."""
    if len(items) <= 1:
        return "".join(items)
    return sep.join(items[:-1]) + (sep.rstrip() + " или " if sep != ", " else " или ") + items[-1]


def fmt_option(o: Option, today: date, wanted_day: date | None) -> str:
    """An offered time: «в 15:30 к мастеру Петру», with the day when it differs."""
    day = "" if o.start.date() == wanted_day else fmt_date(o.start.date(), today) + ", "
    return f"{day}в {fmt_time(o.start)} к мастеру {master_dat(o.master)}"


class Replies:
    """Renders a template by key with keyword facts."""

    def __init__(self, templates: Mapping[str, Any] | None = None) -> None:
        """`templates` by key (the shipped file when None)."""
        self.t = dict(templates if templates is not None else load_templates())

    def __call__(self, key: str, **facts: Any) -> str:
        """The template `key` filled with `facts`; KeyError for an unknown key."""
        return str(self.t[key]).format(**facts)

    def part_name(self, part: str) -> str:
        """«утром», «вечером» for a part-of-day code."""
        return str(self.t.get("part_names", {}).get(part, part))

    @staticmethod
    def phone(e164: str) -> str:
        """A phone for reading back, in groups: «+7 916 123-45-67»."""
        return format_phone(e164)
