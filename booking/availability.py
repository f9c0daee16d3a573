"""Which start times are free: durations, working hours (a service ends by closing),
existing bookings and "not in the past"; and the nearest alternatives to a wanted time.

Pure functions over a list of busy bookings, so they are unit-tested without a store;
`Availability` adds the store lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

from booking.catalog import Catalog, Master
from booking.models import Booking
from booking.store.base import BookingStore

Problem = Literal["past", "closed", "taken", "no_master"]


@dataclass(frozen=True, slots=True)
class Option:
    """One bookable start: when (salon time) and with which master."""

    start: datetime
    master: str


def local_dt(catalog: Catalog, day: date, at: time) -> datetime:
    """`day` at `at` in the salon's timezone."""
    return datetime.combine(day, at, tzinfo=catalog.salon.tz)


def _window(catalog: Catalog, master: Master, day: date) -> tuple[datetime, datetime]:
    return local_dt(catalog, day, master.hours.open), local_dt(catalog, day, master.hours.close)


def _overlaps(busy: Iterable[Booking], master: str, start: datetime, end: datetime) -> bool:
    return any(b.master == master and b.start < end and b.end > start for b in busy)


def check(
    catalog: Catalog,
    busy: Sequence[Booking],
    service: str,
    start: datetime,
    now: datetime,
    master: str | None = None,
) -> tuple[str | None, Problem | None]:
    """(a free master, None) or (None, why not). With no master, the first free one."""
    duration = timedelta(minutes=catalog.service(service).duration_min)
    end = start + duration
    if start < now:
        return None, "past"
    masters = catalog.masters_for(service, master)
    if not masters:
        return None, "no_master"
    in_hours = [m for m in masters if _window(catalog, m, start.date())[0] <= start]
    in_hours = [m for m in in_hours if end <= _window(catalog, m, start.date())[1]]
    if not in_hours:
        return None, "closed"
    for m in in_hours:
        if not _overlaps(busy, m.name, start, end):
            return m.name, None
    return None, "taken"


def free_starts(
    catalog: Catalog,
    busy: Sequence[Booking],
    service: str,
    day: date,
    now: datetime,
    master: str | None = None,
) -> list[Option]:
    """Every free (start, master) on the slot grid that day, in time then catalog order."""
    duration = timedelta(minutes=catalog.service(service).duration_min)
    step = timedelta(minutes=catalog.slot_step_min)
    out: list[Option] = []
    for m in catalog.masters_for(service, master):
        opening, closing = _window(catalog, m, day)
        t = opening
        while t + duration <= closing:
            if t >= now and not _overlaps(busy, m.name, t, t + duration):
                out.append(Option(t, m.name))
            t += step
    order = {m.name: i for i, m in enumerate(catalog.masters)}
    out.sort(key=lambda o: (o.start, order[o.master]))
    return out


def unique_times(options: Iterable[Option]) -> list[Option]:
    """One option per start time (the first master free then)."""
    seen: set[datetime] = set()
    out: list[Option] = []
    for o in options:
        if o.start not in seen:
            seen.add(o.start)
            out.append(o)
    return out


def nearest(
    catalog: Catalog,
    busy: Sequence[Booking],
    service: str,
    wanted: datetime,
    now: datetime,
    master: str | None = None,
    *,
    limit: int = 3,
    days_ahead: int = 7,
) -> list[Option]:
    """Nearest alternatives: the same time with another master, then the closest free
    times that day on either side, then the following days."""
    out: list[Option] = []
    # The wanted time itself with whoever is free: another master than the one named,
    # or — when none was named and the assigned one was just taken — any free master.
    other, _ = check(catalog, busy, service, wanted, now)
    if other is not None and other != master:
        out.append(Option(wanted, other))
    same_day = unique_times(free_starts(catalog, busy, service, wanted.date(), now, master))
    before = [o for o in same_day if o.start < wanted]
    after = [o for o in same_day if o.start > wanted]
    picks = ([before[-1]] if before else []) + ([after[0]] if after else [])
    picks.sort(key=lambda o: abs((o.start - wanted).total_seconds()))
    out.extend(picks)
    if len(out) < limit:
        wanted_t = wanted.timetz().replace(tzinfo=None)
        for k in range(1, days_ahead + 1):
            day = wanted.date() + timedelta(days=k)
            opts = unique_times(free_starts(catalog, busy, service, day, now, master))
            if not opts:
                continue
            target = local_dt(catalog, day, wanted_t)
            out.append(min(opts, key=lambda o: abs((o.start - target).total_seconds())))
            break
    deduped: list[Option] = []
    for o in out:
        if all(o.start != d.start or o.master != d.master for d in deduped):
            deduped.append(o)
    return deduped[:limit]


class Availability:
    """The checks above against the live store."""

    def __init__(self, catalog: Catalog, store: BookingStore) -> None:
        self.catalog = catalog
        self.store = store

    async def _busy(self, first: date, last: date) -> Sequence[Booking]:
        start = local_dt(self.catalog, first, time(0))
        end = local_dt(self.catalog, last + timedelta(days=1), time(0))
        return await self.store.list_between(start, end)

    async def check(
        self, service: str, start: datetime, now: datetime, master: str | None = None
    ) -> tuple[str | None, Problem | None]:
        """Whether `service` can start at `start` (with `master` or any): the master it
        would get, or the problem."""
        busy = await self._busy(start.date(), start.date())
        return check(self.catalog, busy, service, start, now, master)

    async def free_starts(
        self, service: str, day: date, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Free starts for `service` on `day` (after `now`), with `master` or any."""
        busy = await self._busy(day, day)
        return free_starts(self.catalog, busy, service, day, now, master)

    async def nearest(
        self, service: str, wanted: datetime, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Free starts closest to `wanted` over the next week (after `now`)."""
        busy = await self._busy(wanted.date(), wanted.date() + timedelta(days=7))
        return nearest(self.catalog, busy, service, wanted, now, master)


def spread(options: list[Option], n: int) -> list[Option]:
    """Up to n options spread over the list (not three adjacent quarter-hours)."""
    if len(options) <= n:
        return options
    step = (len(options) - 1) / (n - 1)
    return [options[round(i * step)] for i in range(n)]
