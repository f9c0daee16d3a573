"""`BookingBackend` on a salon's YCLIENTS/Altegio account.

The catalog is loaded at start (and refreshed in the background) from `book_services`
and `book_staff`, matched to the config catalog (`booking.yclients.catalog`). Free
times come from `book_times` (cached a few seconds per master, day and service); the
start a caller picks is booked with the `datetime` string YCLIENTS gave for it, offset
included. A positive `check` has passed `book_check`, so the read-back never promises a
time YCLIENTS would refuse. `book_record` carries `api_id` = the call id; after a
timeout or 5xx the record is looked up by that `api_id` before any retry, so a dropped
response never makes a second record. Notifications are enqueued in the local outbox
right after YCLIENTS confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from booking.availability import Option, Problem
from booking.availability import check as rules_check
from booking.backends.base import BackendConfigError, BackendKind, BackendUnavailable
from booking.catalog import Catalog
from booking.models import Booking, NewBooking, SlotTaken
from booking.notify.message import Notification
from booking.store.base import BookingStore
from booking.yclients import wire
from booking.yclients.catalog import CatalogMap, build_catalog
from booking.yclients.client import YclientsClient
from booking.yclients.errors import SMS_CODE_HELP, map_error
from booking.yclients.records import record_with_lookup, to_booking
from booking.yclients.settings import EMULATOR, YclientsSettings
from booking.yclients.times import FreeTimes, nearest_options
from voicebot.clock import Clock, RealClock
from voicebot.redact import mask_number
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PREFETCH = 3  # masters whose free times one check fetches concurrently


class YclientsBackend:
    """Bookings in YCLIENTS; call records and the outbox stay in the local `store`."""

    kind: BackendKind = "yclients"

    def __init__(
        self,
        settings: YclientsSettings,
        config_catalog: Catalog,
        store: BookingStore,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.config_catalog = config_catalog
        self.store = store
        self.clock = clock or RealClock()
        self._http = http
        self.client: YclientsClient | None = None
        self.map: CatalogMap | None = None
        self.times: FreeTimes | None = None
        self._emulator: Any = None
        self._refresh: asyncio.Task[None] | None = None
        self._by_call: dict[str, Booking] = {}

    @classmethod
    def from_config(
        cls,
        section: Mapping[str, Any],
        catalog: Catalog,
        store: BookingStore,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> YclientsBackend:
        """From `booking.yclients` and the env tokens; ValueError on a bad section."""
        env = os.environ if env is None else env
        settings = YclientsSettings.from_config(section.get("yclients"), env)
        return cls(settings, catalog, store, clock=clock)

    # ------------------------------------------------------------------ lifecycle

    @property
    def catalog(self) -> Catalog:
        """The catalog matched to YCLIENTS (the config one until `open`)."""
        return self.map.catalog if self.map else self.config_catalog

    @property
    def api(self) -> YclientsClient:
        """The HTTP client (after `open`)."""
        if self.client is None:
            raise BackendUnavailable("YCLIENTS backend is not open")
        return self.client

    async def open(self) -> None:
        """Check the settings, load the catalog, verify the time zone and form."""
        s = self.settings
        if s.base_url == EMULATOR:
            s = await self._start_emulator()
        if not s.company_id:
            raise BackendConfigError("booking.yclients.company_id is not set")
        if not (s.partner_token and s.user_token):
            raise BackendConfigError(
                "YCLIENTS needs YCLIENTS_PARTNER_TOKEN and YCLIENTS_USER_TOKEN in the environment"
            )
        self.settings = s
        self.client = YclientsClient(s, self.clock, http=self._http)
        self.times = FreeTimes(self.client, self.clock, ttl_s=s.times_cache_s)
        try:
            if s.form_id:
                form = await self.client.bookform(s.form_id)
                if form.get("phone_confirmation"):
                    raise BackendConfigError(SMS_CODE_HELP)
            await self.reload_catalog()
            await self._check_timezone()
        except wire.YclientsError as e:
            raise BackendConfigError(f"YCLIENTS at start: {map_error(e)}") from e
        except httpx.HTTPError as e:
            raise BackendConfigError(f"YCLIENTS unreachable at start: {type(e).__name__}") from e
        self._refresh = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _start_emulator(self) -> YclientsSettings:
        from dataclasses import replace

        from booking.yclients.emulator import YclientsEmulator

        self._emulator = YclientsEmulator.from_catalog(self.config_catalog)
        self._emulator.company.now = self.clock.now  # a simulation's "now:" holds there too
        await self._emulator.start()
        log.warning("YCLIENTS: using the local emulator (a test double) at %s", self._emulator.url)
        return replace(
            self.settings,
            base_url=self._emulator.url,
            company_id=self._emulator.company_id,
            partner_token=self.settings.partner_token or self._emulator.partner_token,
            user_token=self.settings.user_token or self._emulator.user_token,
        )

    async def close(self) -> None:
        """Stop the refresh task, the HTTP client and an in-process emulator."""
        await cancel_and_wait(self._refresh)
        if self.client is not None:
            await self.client.aclose()
        if self._emulator is not None:
            await self._emulator.stop()

    async def reload_catalog(self) -> None:
        """Fetch services and staff and rebuild the matched catalog."""
        api = self.api
        services = await api.book_services()
        staff = await api.book_staff()
        per_staff = {int(st["id"]): await api.book_services(int(st["id"])) for st in staff}
        m = build_catalog(
            self.config_catalog,
            services,
            staff,
            per_staff,
            service_map=self.settings.service_map,
            staff_map=self.settings.staff_map,
        )
        if self.map is None or m.unmatched_services != self.map.unmatched_services:
            for title in m.unmatched_services:
                log.warning("YCLIENTS service %r matches no booking.services entry", title)
            for name in m.unmatched_staff:
                log.warning("YCLIENTS staff %r matches no booking.masters entry", name)
            for what in m.missing:
                log.warning("booking catalog %r is not bookable in YCLIENTS", what)
        if not m.catalog.services or not m.catalog.masters:
            raise BackendConfigError("no YCLIENTS service/staff matches the booking catalog")
        self.map = m

    async def _refresh_loop(self) -> None:
        while True:
            await self.clock.sleep(self.settings.catalog_refresh_s)
            try:
                await self.reload_catalog()
            except Exception as e:  # keep the last good catalog
                log.warning("YCLIENTS catalog refresh failed: %s", e)

    async def _check_timezone(self) -> None:
        """The config zone must give the offsets YCLIENTS gives (a salon in Yekaterinburg
        books in Yekaterinburg time); a mismatch would book the wrong hour."""
        cat = self.catalog
        svc = cat.services[0]
        days = await self.api.book_dates(self._svc(svc.id))
        for m in cat.masters_for(svc.id):
            for day in days[:1]:
                for ft in (await self._times(m.name, day, svc.id))[:1]:
                    self._tz_ok(ft)
                    return

    def _tz_ok(self, ft: wire.FreeTime) -> None:
        tz = self.catalog.salon.tz
        start = ft.start
        expected = start.replace(tzinfo=tz).utcoffset()
        if start.utcoffset() != expected:
            raise BackendConfigError(
                f"booking.salon.timezone {self.catalog.salon.timezone} gives {expected} but "
                f"YCLIENTS times come with {start.utcoffset()} ({ft.datetime}): set the "
                "salon's real time zone"
            )

    # ------------------------------------------------------------------ ids

    def _svc(self, service: str) -> int:
        assert self.map is not None
        return self.map.service_ids[service]

    def _staff(self, master: str) -> int:
        assert self.map is not None
        return self.map.staff_ids[master]

    async def _times(self, master: str, day: date, service: str) -> list[wire.FreeTime]:
        assert self.times is not None
        try:
            return await self.times.get(self._staff(master), day, self._svc(service))
        except wire.YclientsError as e:
            raise map_error(e) from e
        except httpx.HTTPError as e:
            raise BackendUnavailable(f"YCLIENTS: {type(e).__name__}") from e

    async def _free_at(self, master: str, start: datetime, service: str) -> wire.FreeTime | None:
        for ft in await self._times(master, start.date(), service):
            if ft.start == start:
                self._tz_ok(ft)
                return ft
        return None

    # ------------------------------------------------------------------ availability

    async def check(
        self, service: str, start: datetime, now: datetime, master: str | None = None
    ) -> tuple[str | None, Problem | None]:
        """Hours/past rules from config, then `book_times`, then `book_check`."""
        first, problem = rules_check(self.catalog, [], service, start, now, master)
        if problem is not None or first is None:
            return None, problem
        masters = self.catalog.masters_for(service, master)
        # The first few masters' times are fetched at once: one round trip to YCLIENTS
        # instead of one per master, and without outrunning the 5 requests/s budget.
        await asyncio.gather(
            *(self._times(m.name, start.date(), service) for m in masters[:PREFETCH])
        )
        for m in masters:
            ft = await self._free_at(m.name, start, service)
            if ft is None:
                continue
            appt = wire.appointment([self._svc(service)], self._staff(m.name), ft.datetime)
            try:
                await self.api.book_check([appt])
            except wire.YclientsError as e:
                err = map_error(e)
                if isinstance(err, SlotTaken):
                    self.times.invalidate(self._staff(m.name), start.date())  # type: ignore[union-attr]
                    continue
                raise err from e
            except httpx.HTTPError as e:
                raise BackendUnavailable(f"YCLIENTS: {type(e).__name__}") from e
            return m.name, None
        return None, "taken"

    async def free_starts(
        self, service: str, day: date, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Every free (start, master) YCLIENTS lists that day."""
        masters = self.catalog.masters_for(service, master)
        lists = await asyncio.gather(*(self._times(m.name, day, service) for m in masters))
        tz = self.catalog.salon.tz
        out = [
            Option(ft.start.astimezone(tz), m.name)
            for m, fts in zip(masters, lists, strict=True)
            for ft in fts
            if ft.start >= now
        ]
        order = {m.name: i for i, m in enumerate(self.catalog.masters)}
        out.sort(key=lambda o: (o.start, order[o.master]))
        return out

    async def nearest(
        self, service: str, wanted: datetime, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Same time with another master, nearest that day, then the next free date."""
        same_any = await self.free_starts(service, wanted.date(), now)
        same = [o for o in same_any if master is None or o.master == master]
        later = await self._next_day(service, wanted, now, master)
        return nearest_options(same_any, same, later, wanted, master)

    async def _next_day(
        self, service: str, wanted: datetime, now: datetime, master: str | None
    ) -> list[Option]:
        """Options on the first later day with free time (within a week): the day after
        is tried first, `book_dates` is asked only when that day is full. For any
        master one merged `book_times` (staff 0) finds the time, then the first master
        free at it: 2 requests where one per master would outrun 5 requests/s."""
        day = wanted.date() + timedelta(days=1)
        for attempt in range(2):
            opts = await self._day_options(service, day, now, master, wanted)
            if opts or attempt:
                return opts
            staff = self._staff(master) if master else None
            try:
                dates = await self.api.book_dates(self._svc(service), staff)
            except wire.YclientsError as e:
                raise map_error(e) from e
            except httpx.HTTPError as e:
                raise BackendUnavailable(f"YCLIENTS: {type(e).__name__}") from e
            later = [d for d in dates if day < d <= wanted.date() + timedelta(days=7)]
            if not later:
                return []
            day = later[0]
        return []

    async def _day_options(
        self, service: str, day: date, now: datetime, master: str | None, wanted: datetime
    ) -> list[Option]:
        if master is not None:
            return await self.free_starts(service, day, now, master)
        assert self.times is not None
        try:
            merged = await self.times.get(0, day, self._svc(service))
        except wire.YclientsError as e:
            raise map_error(e) from e
        except httpx.HTTPError as e:
            raise BackendUnavailable(f"YCLIENTS: {type(e).__name__}") from e
        tz = self.catalog.salon.tz
        target = datetime.combine(day, wanted.astimezone(tz).time(), tzinfo=tz)
        for ft in sorted(merged, key=lambda f: abs((f.start - target).total_seconds())):
            if ft.start < now:
                continue
            for m in self.catalog.masters_for(service):
                if await self._free_at(m.name, ft.start, service) is not None:
                    return [Option(ft.start.astimezone(tz), m.name)]
        return []

    # ------------------------------------------------------------------ records

    def _booking(self, r: wire.Record) -> Booking | None:
        assert self.map is not None
        return to_booking(r, self.map, self.catalog)

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """`book_record` with `api_id`; lookup by `api_id` before any retry."""
        api_id = booking.call_id or f"voicebot-{uuid.uuid4().hex}"
        if booking.call_id and booking.call_id in self._by_call:
            return self._by_call[booking.call_id]
        staff = self._staff(booking.master)
        ft = await self._free_at(booking.master, booking.start, booking.service)
        if ft is None:
            raise SlotTaken(f"{booking.master} is not free at {booking.start.isoformat()}")
        body = wire.record_request(
            phone_e164=booking.phone,
            fullname=booking.name,
            appointments=[wire.appointment([self._svc(booking.service)], staff, ft.datetime)],
            api_id=api_id,
            comment="Записано голосовым ботом",
            notify_by_sms=self.settings.notify_by_sms,
            notify_by_email=self.settings.notify_by_email,
        )
        result = await record_with_lookup(self.api, body, api_id, booking.start.date(), staff)
        assert self.times is not None
        self.times.invalidate(staff, booking.start.date())
        created = Booking(
            id=str(result),
            call_id=booking.call_id,
            service=booking.service,
            master=booking.master,
            start=booking.start,
            end=booking.end,
            name=booking.name,
            phone=booking.phone,
            created_at=self.clock.now(),
        )
        if booking.call_id:
            self._by_call[booking.call_id] = created
        log.info("YCLIENTS record %s for %s", created.id, mask_number(booking.phone))
        await self._enqueue(notify, created.id)
        return created

    async def _enqueue(self, notify: Sequence[Notification], booking_id: str) -> None:
        if not notify:
            return
        try:
            await self.store.outbox.enqueue(notify, booking_id, datetime.now(UTC))
        except Exception:  # the booking is real; losing its notice must not undo it
            log.exception("could not enqueue notifications for YCLIENTS record %s", booking_id)

    async def get(self, booking_id: str) -> Booking | None:
        """`GET /record`; None for an unknown id or a record outside the catalog."""
        try:
            return self._booking(await self.api.record(int(booking_id)))
        except wire.YclientsError as e:
            if e.status == 404:
                return None
            raise map_error(e) from e
        except ValueError:
            return None

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """`DELETE /record/{cid}/{id}` for an active record."""
        current = await self.get(booking_id)
        if current is None or current.status != "active":
            return None
        try:
            await self.api.delete_record(int(booking_id))
        except wire.YclientsError as e:
            raise map_error(e) from e
        except httpx.HTTPError as e:
            raise BackendUnavailable(f"YCLIENTS: {type(e).__name__}") from e
        assert self.times is not None
        self.times.invalidate(self._staff(current.master), current.start.date())
        await self._enqueue(notify, booking_id)
        return Booking(
            **{f: getattr(current, f) for f in Booking.__slots__} | {"status": "cancelled"}
        )

    async def list_between(
        self,
        start: datetime,
        end: datetime,
        *,
        master: str | None = None,
        include_cancelled: bool = False,
    ) -> Sequence[Booking]:
        """Records overlapping [start, end): live ones, deleted ones too on request."""
        staff = self._staff(master) if master else None
        try:
            recs = await self.api.records(
                start.date(), end.date(), staff_id=staff, with_deleted=include_cancelled
            )
        except wire.YclientsError as e:
            raise map_error(e) from e
        out = [
            b
            for r in recs
            if (b := self._booking(r)) is not None and (include_cancelled or b.status == "active")
        ]
        return sorted(
            (b for b in out if b.start < end and b.end > start), key=lambda b: (b.start, b.master)
        )

    async def find_by_phone(
        self, phone: str, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """Active records of this client from `after` (default now) on."""
        since = after or self.clock.now()
        first = since.astimezone(self.catalog.salon.tz).date()
        digits = phone.lstrip("+")
        try:
            recs = await self.api.records(first, first + timedelta(days=self.settings.days_ahead))
        except wire.YclientsError as e:
            raise map_error(e) from e
        out = [b for r in recs if r.client_phone == digits and (b := self._booking(r)) is not None]
        return sorted(
            (b for b in out if b.status == "active" and b.end > since), key=lambda b: b.start
        )
