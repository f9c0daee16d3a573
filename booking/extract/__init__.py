"""Deterministic slot and intent extraction from one caller utterance.

The default offline, the fallback when YandexGPT errors or is late, and the validator of
whatever YandexGPT returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, time
from typing import Any, Literal

from booking.catalog import Catalog
from booking.extract.dates import parse_date
from booking.extract.intents import find_answer, find_choice, find_intents
from booking.extract.names import find_name
from booking.extract.phone import parse_phone
from booking.extract.services import find_master, find_service, find_unoffered, wants_any_master
from booking.extract.text import tokenize
from booking.extract.times import parse_part_of_day, parse_time

Expecting = Literal["service", "date", "time", "name", "phone", "confirm", "choice"] | None


@dataclass(frozen=True, slots=True)
class Extraction:
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

    @property
    def has_slots(self) -> bool:
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
        ):
            if getattr(self, f) is None and getattr(other, f) is not None:
                updates[f] = getattr(other, f)
        if not self.master_any and other.master_any:
            updates["master_any"] = True
        if other.intents - self.intents:
            updates["intents"] = self.intents | other.intents
        return replace(self, **updates) if updates else self

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k in Extraction.__slots__:
            v = getattr(self, k)
            if v is None or v is False or v == frozenset():
                continue
            if isinstance(v, date | time):
                v = v.isoformat(timespec="minutes") if isinstance(v, time) else v.isoformat()
            elif isinstance(v, frozenset):
                v = sorted(v)
            d[k] = v
        return d


def _blank(text: str, span: tuple[int, int]) -> str:
    return text[: span[0]] + " " * (span[1] - span[0]) + text[span[1] :]


def extract(text: str, catalog: Catalog, today: date, expecting: Expecting = None) -> Extraction:
    """Everything the caller said in one utterance, validated against the catalog."""
    work = text
    phone = parse_phone(work)
    if phone:
        work = _blank(work, phone[1])
    name = find_name(work, expecting=expecting == "name")
    name_span = name[1] if name else None
    if name_span:
        work_no_name = _blank(work, name_span)
    else:
        work_no_name = work
    d = parse_date(work_no_name, today)
    words = [t for t in tokenize(work_no_name) if not t.is_number]
    bare_ok = expecting in {"time", "choice"} or (not words and expecting != "phone")
    t = parse_time(work_no_name, bare_number_ok=bare_ok)
    service = find_service(work_no_name, catalog)
    return Extraction(
        service=service,
        service_unknown=None if service else find_unoffered(work_no_name),
        master=find_master(work_no_name, catalog),
        master_any=wants_any_master(work_no_name),
        date=d,
        time=t,
        part_of_day=None if t else parse_part_of_day(work_no_name),
        name=name[0] if name else None,
        phone=phone[0] if phone else None,
        answer=find_answer(text),
        choice=find_choice(work_no_name),
        intents=find_intents(text),
    )


__all__ = ["Expecting", "Extraction", "extract"]
