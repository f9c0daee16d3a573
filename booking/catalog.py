"""The salon's catalog (services, masters, hours) built from the `booking:` config section.

Parsed once into frozen dataclasses so the dialogue and availability code never dig in
dicts and a malformed config fails at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_SERVICES: list[dict[str, Any]] = [
    {
        "id": "haircut",
        "name": "Стрижка",
        "duration_min": 30,
        "price": 1500,
        "synonyms": ["стрижка", "подстричься", "постричься", "подстричь", "стричься"],
    },
    {
        "id": "haircut_beard",
        "name": "Стрижка + борода",
        "duration_min": 45,
        "price": 2200,
        "synonyms": [
            "стрижка и борода",
            "стрижка с бородой",
            "борода",
            "бороду подровнять",
            "бритьё",
        ],
    },
    {
        "id": "styling",
        "name": "Укладка",
        "duration_min": 20,
        "price": 1000,
        "synonyms": ["укладка", "уложить волосы", "причёска"],
    },
]
DEFAULT_MASTERS: list[dict[str, Any]] = [
    {"name": n, "services": ["haircut", "haircut_beard", "styling"]}
    for n in ("Иван", "Петр", "Сергей")
]


def _parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int):  # YAML reads 09:00 unquoted as sexagesimal minutes
        return time(value // 60, value % 60)
    hh, _, mm = str(value).partition(":")
    return time(int(hh), int(mm or 0))


_MASTER_KEYS = {"name", "services", "hours", "aliases"}


def _aliases(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The `aliases:` list of a master entry; unknown keys are a config error."""
    unknown = set(raw) - _MASTER_KEYS
    if unknown:
        raise ValueError(
            f"booking.masters: unknown key(s) {sorted(unknown)} in {raw.get('name')!r}"
        )
    value = raw.get("aliases") or ()
    if isinstance(value, str) or not all(isinstance(a, str) and a.strip() for a in value):
        raise ValueError(f"booking.masters[{raw.get('name')!r}].aliases must be a list of names")
    return tuple(a.strip() for a in value)


@dataclass(frozen=True, slots=True)
class Hours:
    """Opening hours of one day: starts allowed in [open, close)."""

    open: time = time(9, 0)
    close: time = time(21, 0)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, default: Hours | None = None) -> Hours:
        """`{open: "09:00", close: "21:00"}` over `default`; ValueError on a bad time."""
        base = default or cls()
        if not raw:
            return base
        return cls(
            open=_parse_hhmm(raw.get("open", base.open.strftime("%H:%M"))),
            close=_parse_hhmm(raw.get("close", base.close.strftime("%H:%M"))),
        )


@dataclass(frozen=True, slots=True)
class Service:
    """A service: catalog id, spoken name, duration (minutes), price (roubles), and
    the phrases callers use for it."""

    id: str
    name: str
    duration_min: int
    price: int
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Master:
    """A master: the services they do, their hours, and the other names callers use
    for them (config `aliases`, added to the standard diminutives)."""

    name: str
    services: frozenset[str]
    hours: Hours
    aliases: tuple[str, ...] = ()


DEFAULT_ADDRESS = "Москва, улица Пушкина, дом 10"


@dataclass(frozen=True, slots=True)
class Salon:
    """Name, address, IANA time zone and hours of the salon."""

    name: str = "Стиль"
    address: str = DEFAULT_ADDRESS
    timezone: str = "Europe/Moscow"
    hours: Hours = field(default_factory=Hours)

    @property
    def tz(self) -> ZoneInfo:
        """The salon's time zone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Catalog:
    """What the salon offers: services, masters, the start-time grid (minutes)."""

    salon: Salon
    services: tuple[Service, ...]
    masters: tuple[Master, ...]
    slot_step_min: int = 15

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> Catalog:
        """The catalog from the `booking:` section (defaults for missing parts);
        ValueError on a malformed master entry."""
        section = section or {}
        raw_salon = section.get("salon") or {}
        hours = Hours.from_config(raw_salon.get("hours"))
        salon = Salon(
            name=str(raw_salon.get("name", "Стиль")),
            # Not `Salon.address`: on a slots dataclass that is the member descriptor.
            address=str(raw_salon.get("address", DEFAULT_ADDRESS)),
            timezone=str(raw_salon.get("timezone", "Europe/Moscow")),
            hours=hours,
        )
        services = tuple(
            Service(
                id=str(s["id"]),
                name=str(s["name"]),
                duration_min=int(s.get("duration_min", 30)),
                price=int(s.get("price", 0)),
                synonyms=tuple(str(x) for x in s.get("synonyms", ())),
            )
            for s in (section.get("services") or DEFAULT_SERVICES)
        )
        all_ids = frozenset(s.id for s in services)
        masters = tuple(
            Master(
                name=str(m["name"]),
                services=frozenset(m.get("services") or all_ids),
                hours=Hours.from_config(m.get("hours"), hours),
                aliases=_aliases(m),
            )
            for m in (section.get("masters") or DEFAULT_MASTERS)
        )
        return cls(
            salon=salon,
            services=services,
            masters=masters,
            slot_step_min=int(section.get("slot_step_min", 15)),
        )

    def service(self, service_id: str) -> Service:
        """The service by id; KeyError if unknown."""
        for s in self.services:
            if s.id == service_id:
                return s
        raise KeyError(service_id)

    def master(self, name: str) -> Master:
        """The master by name (case-insensitive); KeyError if unknown."""
        for m in self.masters:
            if m.name.casefold() == name.casefold():
                return m
        raise KeyError(name)

    def masters_for(self, service_id: str, only: str | None = None) -> Sequence[Master]:
        """Masters doing `service_id` (only the one named `only`, if given)."""
        return [
            m for m in self.masters if service_id in m.services and (only is None or m.name == only)
        ]
