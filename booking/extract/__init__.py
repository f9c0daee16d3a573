"""Deterministic slot and intent extraction from one caller utterance.

The default offline, the fallback when YandexGPT errors or is late, and the validator of
whatever YandexGPT returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, Literal

from booking.catalog import Catalog
from booking.extract.intents import find_answer, find_choice, find_intents
from booking.extract.names import find_name, find_name_like
from booking.extract.phone import (
    parse_phone,
    phone_fix,
    phone_fragment,
    phone_start,
    restarts_number,
)
from booking.extract.services import (
    find_master,
    find_service,
    find_service_without,
    find_unknown_master,
    find_unoffered,
    master_name_forms,
    wants_any_master,
)
from booking.extract.text import tokenize
from booking.extract.when import parse_when

_ASKS_ABOUT_MASTER = {"работает", "работают", "свободен", "свободна", "свободны", "занят"}

Expecting = Literal["service", "date", "time", "name", "phone", "confirm", "choice"] | None


@dataclass(frozen=True, slots=True)
class Extraction:
    """Everything one utterance says, in normalized form (catalog ids, E.164, dates),
    plus what it could not place (`unplaced`) or must ask about (`time_options`)."""

    service: str | None = None
    service_unknown: str | None = None
    master: str | None = None
    master_any: bool = False
    date: date | None = None
    time: time | None = None
    part_of_day: str | None = None
    name: str | None = None
    phone: str | None = None
    answer: Literal["yes", "no"] | None = None
    choice: int | None = None
    intents: frozenset[str] = field(default_factory=frozenset)
    time_options: tuple[time, ...] = ()  # an hour that fits both halves of the day
    after: time | None = None  # «после шести»: free times from then on
    phone_part: str | None = None  # digits of a phone said in pieces («8 916»)
    phone_restart: bool = False  # the piece starts the number over («ой, нет, 8 926»)
    phone_fix: tuple[str, str] | None = None  # «не 67, а 76»
    unplaced: tuple[str, ...] = ()  # numbers/days/months nothing could use
    master_unknown: str | None = None  # «к Васе»: a master the salon does not have
    name_like: str | None = None  # a first name said without «меня зовут»
    only_date_unsure: bool = False  # the unplaced words are all about the day

    @property
    def has_slots(self) -> bool:
        """Whether any booking slot has a value."""
        return any(
            v is not None
            for v in (self.service, self.master, self.date, self.time, self.name, self.phone)
        )

    @property
    def resolved(self) -> bool:
        """Whether the deterministic layer understood something in the turn."""
        return (
            self.has_slots
            or self.master_any
            or self.service_unknown is not None
            or self.part_of_day is not None
            or self.answer is not None
            or self.choice is not None
            or bool(self.intents)
            or bool(self.time_options)
            or self.after is not None
            or self.phone_part is not None
            or self.phone_fix is not None
            or self.master_unknown is not None
        )

    def merged_with(self, other: Extraction) -> Extraction:
        """Fill this extraction's gaps from `other` (deterministic values win)."""
        updates: dict[str, Any] = {}
        for f in (
            "service",
            "service_unknown",
            "master",
            "date",
            "time",
            "part_of_day",
            "name",
            "phone",
            "answer",
            "choice",
            "after",
        ):
            if getattr(self, f) is None and getattr(other, f) is not None:
                updates[f] = getattr(other, f)
        if not self.master_any and other.master_any:
            updates["master_any"] = True
        if other.intents - self.intents:
            updates["intents"] = self.intents | other.intents
        return replace(self, **updates) if updates else self

    def to_json(self) -> dict[str, Any]:
        """The non-empty fields as JSON values (call records, logs)."""
        d: dict[str, Any] = {}
        for k in Extraction.__slots__:
            v = getattr(self, k)
            if v is None or v is False or v == frozenset():
                continue
            if isinstance(v, date | time):
                v = v.isoformat(timespec="minutes") if isinstance(v, time) else v.isoformat()
            elif isinstance(v, frozenset):
                v = sorted(v)
            elif isinstance(v, tuple):
                if not v:
                    continue
                v = [x.isoformat(timespec="minutes") if isinstance(x, time) else x for x in v]
            d[k] = v
        return d


def _blank(text: str, span: tuple[int, int]) -> str:
    return text[: span[0]] + " " * (span[1] - span[0]) + text[span[1] :]


def extract(
    text: str,
    catalog: Catalog,
    today: date,
    expecting: Expecting = None,
    *,
    now: datetime | None = None,
    current_service: str | None = None,
    have_name: bool = False,
) -> Extraction:
    """Everything the caller said in one utterance, validated against the catalog.

    Order matters: a phone (and its self-correction) is taken first, then the name, so
    their digits and words are not read as a time or a master; `now` enables relative
    times («через два часа»); `current_service` lets «без бороды» drop the beard.
    """
    work = text
    phone = parse_phone(work)
    part: str | None = None
    fix: tuple[str, str] | None = None
    if phone:
        work = _blank(work, phone[1])
    elif expecting == "phone" and (part := phone_fragment(work)) is not None:
        work = ""
    elif (start := phone_start(work)) is not None:
        part = start[0]  # «Ольга, 8 916»: the phone has begun, whatever was asked
        work = _blank(work, start[1])
    elif (f := phone_fix(work)) is not None:
        fix = (f[0], f[1])
        work = _blank(work, f[2])
    elif expecting == "confirm" and (tail := phone_fragment(work)) and 4 <= len(tail) <= 7:
        fix = ("", tail)  # «нет, 45-76» at the read-back: the last digits again
        work = ""
    name = find_name(work, expecting=expecting == "name")
    if name:
        work = _blank(work, name[1])
    h = catalog.salon.hours
    choice = find_choice(work) if expecting == "choice" else None
    when = parse_when(
        work,
        today,
        now=now,
        hours=(h.open, h.close),
        bare_ok=expecting in {"time", "choice"},
        skip_ordinals=choice is not None,
    )
    service = find_service(work, catalog) or find_service_without(work, catalog, current_service)
    # A master's name with nothing marking a master («Пётр, хочу постричься…») is the
    # caller's own name while that is still missing; «к Петру», «мастер Пётр», a pick
    # among offered masters, a read-back correction or a question about a master mark one.
    words = {t.norm for t in tokenize(work)}
    master_ok = (
        have_name
        or expecting in {"choice", "confirm"}
        or "?" in text
        or bool(words & _ASKS_ABOUT_MASTER)
    )
    return Extraction(
        service=service,
        service_unknown=None if service else find_unoffered(work),
        master=find_master(work, catalog, marked_only=not master_ok),
        master_any=wants_any_master(work),
        date=when.date,
        time=when.time,
        part_of_day=when.part_of_day,
        name=name[0] if name else None,
        phone=phone[0] if phone else None,
        answer=find_answer(text),
        choice=choice if choice is not None else find_choice(work) if not when.unplaced else None,
        intents=find_intents(text),
        time_options=when.time_options,
        after=when.after,
        phone_part=part,
        phone_restart=part is not None and restarts_number(text, part),
        phone_fix=fix,
        unplaced=when.unplaced,
        only_date_unsure=when.only_date_unsure,
        master_unknown=find_unknown_master(work, catalog),
        name_like=None
        if name
        else find_name_like(work, master_name_forms(catalog) if master_ok else frozenset()),
    )


__all__ = ["Expecting", "Extraction", "extract"]
