"""The YCLIENTS emulator's company: services, staff, schedules and records, with the
booking rules the real API applies (pure, no I/O; `emulator.py` serves it over HTTP).

A test double: it models what the bot relies on (free times on a grid inside working
hours, no overlapping records per master, the validation error codes) and nothing else
of YCLIENTS (no payments, resources, group events, loyalty...).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo


@dataclass
class EmuService:
    """A service: id, title, price range (roubles), default length (seconds)."""

    id: int
    title: str
    price_min: int
    price_max: int
    seance_length: int


@dataclass
class EmuStaff:
    """A master: the services done (id → length in seconds) and daily hours."""

    id: int
    name: str
    services: dict[int, int]
    open: time = time(9, 0)
    close: time = time(21, 0)
    bookable: bool = True


@dataclass
class EmuRecord:
    """A visit in the journal."""

    id: int
    staff_id: int
    service_ids: list[int]
    start: datetime
    length_s: int
    client_name: str
    client_phone: str  # digits
    api_id: str
    hash: str = field(default_factory=lambda: secrets.token_hex(16))
    deleted: bool = False
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def end(self) -> datetime:
        """Start plus length."""
        return self.start + timedelta(seconds=self.length_s)


class BookingRefused(Exception):
    """A validation failure with the API's numeric code and HTTP status."""

    def __init__(self, code: int, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Company:
    """One salon as YCLIENTS holds it."""

    id: int
    title: str
    timezone: str
    services: list[EmuService]
    staff: list[EmuStaff]
    step_min: int = 15
    days_ahead: int = 30
    sms_confirm: bool = False
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    records: list[EmuRecord] = field(default_factory=list)
    _next_id: int = 1000

    @property
    def tz(self) -> ZoneInfo:
        """The company's zone."""
        return ZoneInfo(self.timezone)

    def service(self, sid: int) -> EmuService:
        """By id; BookingRefused 438 when unknown."""
        for s in self.services:
            if s.id == sid:
                return s
        raise BookingRefused(438, "Услуга не найдена или удалена")

    def staff_by_id(self, sid: int) -> EmuStaff | None:
        """By id, None when unknown."""
        return next((s for s in self.staff if s.id == sid), None)

    def length(self, staff: EmuStaff, service_ids: Sequence[int]) -> int:
        """Total seconds of the services with this master."""
        return sum(staff.services.get(i) or self.service(i).seance_length for i in service_ids)

    def active(self, staff_id: int) -> list[EmuRecord]:
        """The master's records that are not deleted."""
        return [r for r in self.records if r.staff_id == staff_id and not r.deleted]

    def is_free(self, staff: EmuStaff, start: datetime, length_s: int) -> bool:
        """Inside hours, on the grid, in the future, no overlap."""
        local = start.astimezone(self.tz)
        end = local + timedelta(seconds=length_s)
        opening = datetime.combine(local.date(), staff.open, tzinfo=self.tz)
        closing = datetime.combine(local.date(), staff.close, tzinfo=self.tz)
        if local < opening or end > closing or local <= self.now():
            return False
        if (local - opening).total_seconds() % (self.step_min * 60):
            return False
        return not any(r.start < end and r.end > local for r in self.active(staff.id))

    def doers(self, service_ids: Sequence[int], staff_id: int) -> list[EmuStaff]:
        """Staff that do all the services (one given staff, or everyone for 0)."""
        pool = self.staff if staff_id == 0 else [s for s in self.staff if s.id == staff_id]
        return [s for s in pool if s.bookable and all(i in s.services for i in service_ids)]

    def free_times(
        self, staff_id: int, day: date, service_ids: Sequence[int]
    ) -> list[dict[str, Any]]:
        """`book_times` items for a master (or any, 0) that day."""
        seen: dict[str, dict[str, Any]] = {}
        for st in self.doers(service_ids, staff_id):
            length = self.length(st, service_ids)
            t = datetime.combine(day, st.open, tzinfo=self.tz)
            closing = datetime.combine(day, st.close, tzinfo=self.tz)
            while t + timedelta(seconds=length) <= closing:
                if self.is_free(st, t, length):
                    key = t.strftime("%H:%M")
                    seen.setdefault(
                        key, {"time": key, "seance_length": length, "datetime": t.isoformat()}
                    )
                t += timedelta(minutes=self.step_min)
        return [seen[k] for k in sorted(seen)]

    def free_dates(self, service_ids: Sequence[int], staff_id: int) -> list[date]:
        """Dates in the booking horizon with at least one free time."""
        today = self.now().astimezone(self.tz).date()
        return [
            today + timedelta(days=k)
            for k in range(self.days_ahead)
            if self.free_times(staff_id, today + timedelta(days=k), service_ids)
        ]

    def check(
        self, appointments: Sequence[dict[str, Any]]
    ) -> list[tuple[EmuStaff, datetime, list[int], int]]:
        """Validate appointments; the (staff, start, services, length) each would take.
        Raises BookingRefused 433 (taken), 436 (no free master), 437 (overlap)."""
        chosen: list[tuple[EmuStaff, datetime, list[int], int]] = []
        for a in appointments:
            services = [int(x) for x in a.get("services") or ()]
            for sid in services:
                self.service(sid)
            try:
                start = datetime.fromisoformat(str(a["datetime"]))
            except (KeyError, ValueError) as e:
                raise BookingRefused(0, "Неверный формат даты", 422) from e
            if start.tzinfo is None:
                start = start.replace(tzinfo=self.tz)
            staff_id = int(a.get("staff_id") or 0)
            pick = None
            for st in self.doers(services, staff_id):
                length = self.length(st, services)
                clash = any(
                    c[0].id == st.id
                    and c[1] < start + timedelta(seconds=length)
                    and c[1] + timedelta(seconds=c[3]) > start
                    for c in chosen
                )
                if clash and staff_id:
                    raise BookingRefused(437, "Записи пересекаются между собой")
                if not clash and self.is_free(st, start, length):
                    pick = (st, start, services, length)
                    break
            if pick is None:
                if staff_id:
                    raise BookingRefused(433, "Выбранное время уже занято")
                raise BookingRefused(436, "Нет свободных сотрудников на это время")
            chosen.append(pick)
        return chosen

    def book(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """`book_record`: validate client fields and times, then create the records."""
        phone = str(body.get("phone") or "")
        if not phone.isdigit() or not 10 <= len(phone) <= 15:
            raise BookingRefused(431, "Неверный формат телефона")
        if not str(body.get("fullname") or "").strip():
            raise BookingRefused(435, "Не указано имя")
        if self.sms_confirm and not body.get("code"):
            raise BookingRefused(432, "Неверный код подтверждения из SMS")
        appointments = list(body.get("appointments") or ())
        chosen = self.check(appointments)
        out = []
        for a, (st, start, services, length) in zip(appointments, chosen, strict=True):
            self._next_id += 1
            rec = EmuRecord(
                id=self._next_id,
                staff_id=st.id,
                service_ids=services,
                start=start.astimezone(self.tz),
                length_s=length,
                client_name=str(body["fullname"]),
                client_phone=phone,
                api_id=str(body.get("api_id") or ""),
            )
            self.records.append(rec)
            out.append({"id": a.get("id", 1), "record_id": rec.id, "record_hash": rec.hash})
        return out

    def record_json(self, r: EmuRecord) -> dict[str, Any]:
        """A record object as `/records` and `/record` return it."""
        st = self.staff_by_id(r.staff_id)
        return {
            "id": r.id,
            "company_id": self.id,
            "staff_id": r.staff_id,
            "services": [
                {"id": s.id, "title": s.title, "cost": s.price_min, "amount": 1}
                for s in (self.service(i) for i in r.service_ids)
            ],
            "staff": {"id": r.staff_id, "name": st.name if st else ""},
            "client": {
                "id": int(r.client_phone[-6:] or 0),
                "name": r.client_name,
                "phone": f"+{r.client_phone}",
                "email": "",
            },
            "date": r.start.strftime("%Y-%m-%d %H:%M:%S"),
            "datetime": r.start.isoformat(),
            "create_date": r.created.astimezone(self.tz).isoformat(),
            "comment": "",
            "online": True,
            "attendance": 0,
            "confirmed": 1,
            "seance_length": r.length_s,
            "length": r.length_s,
            "api_id": r.api_id,
            "deleted": r.deleted,
        }
