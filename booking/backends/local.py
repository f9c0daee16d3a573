"""The local backend: bookings in this project's own store (SQLite or PostgreSQL).

The no-double-booking guarantees are the store's (SQLite `BEGIN IMMEDIATE`, PostgreSQL
exclusion constraint); this class only adds the catalog from config and the availability
rules of `booking.availability`, exactly as the dialogue used them before backends
existed. Notification rows go into the same transaction as the booking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from booking.availability import Availability, Option, Problem
from booking.backends.base import BackendKind
from booking.catalog import Catalog
from booking.models import Booking, NewBooking
from booking.notify.message import Notification
from booking.store.base import BookingStore


class LocalBackend:
    """`BookingBackend` over a `BookingStore` and the config catalog."""

    kind: BackendKind = "local"

    def __init__(self, catalog: Catalog, store: BookingStore) -> None:
        self._catalog = catalog
        self.store = store
        self.availability = Availability(catalog, store)

    @property
    def catalog(self) -> Catalog:
        """The `booking:` config catalog (static)."""
        return self._catalog

    async def open(self) -> None:
        """Nothing beyond the store, which the provider opens (it also keeps calls)."""

    async def close(self) -> None:
        """Nothing to release: the store is closed by its owner."""

    async def check(
        self, service: str, start: datetime, now: datetime, master: str | None = None
    ) -> tuple[str | None, Problem | None]:
        """See `BookingBackend.check` (hours and bookings from the store)."""
        return await self.availability.check(service, start, now, master)

    async def free_starts(
        self, service: str, day: date, now: datetime, master: str | None = None
    ) -> list[Option]:
        """See `BookingBackend.free_starts` (the `slot_step_min` grid)."""
        return await self.availability.free_starts(service, day, now, master)

    async def nearest(
        self, service: str, wanted: datetime, now: datetime, master: str | None = None
    ) -> list[Option]:
        """See `BookingBackend.nearest`."""
        return await self.availability.nearest(service, wanted, now, master)

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """Commit in the store, the outbox rows in the same transaction."""
        return await self.store.create(booking, notify=notify)

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """Cancel in the store, the outbox rows in the same transaction."""
        return await self.store.cancel(booking_id, notify=notify)

    async def find_by_phone(
        self, phone: str, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """Store lookup by E.164 phone."""
        return await self.store.find_by_phone(phone, after=after)

    async def list_between(
        self,
        start: datetime,
        end: datetime,
        *,
        master: str | None = None,
        include_cancelled: bool = False,
    ) -> Sequence[Booking]:
        """Store range query."""
        return await self.store.list_between(
            start, end, master=master, include_cancelled=include_cancelled
        )

    async def get(self, booking_id: str) -> Booking | None:
        """Store lookup by id."""
        return await self.store.get(booking_id)
