"""The booking store interface; backends are chosen by URL (`open_store`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from booking.models import Booking, CallRecord, NewBooking
from booking.notify.message import Notification
from booking.notify.outbox import Outbox
from booking.privacy.act import PurgeReport


class BookingStore(Protocol):
    """Bookings, call records and the notification outbox in one database."""

    outbox: Outbox

    async def open(self) -> None:
        """Connect and create the schema if missing."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """Commit a booking durably, or raise `SlotTaken`. `notify` rows are written to
        the outbox in the same transaction.

        Idempotent per call: a second create with the same `call_id` returns the
        first (still active) booking unchanged.
        """
        ...

    async def list_between(
        self,
        start: datetime,
        end: datetime,
        *,
        master: str | None = None,
        include_cancelled: bool = False,
    ) -> Sequence[Booking]:
        """Bookings that overlap [start, end): active ones, and cancelled ones too when
        `include_cancelled` (the calendar feed publishes those as STATUS:CANCELLED)."""
        ...

    async def list_all(self, *, include_cancelled: bool = False) -> Sequence[Booking]:
        """Every booking (active only unless `include_cancelled`), by start."""
        ...

    async def get(self, booking_id: str) -> Booking | None:
        """One booking by id, or None."""
        ...

    async def find_by_phone(
        self, phone: str, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """Active bookings for a phone (E.164), ending after `after` when given."""
        ...

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """Mark cancelled and bump the change counter `seq` (with `notify` rows in the
        same transaction); returns the booking, or None if no active one has this id."""
        ...

    async def save_call(self, record: CallRecord) -> None:
        """Store (or replace) one call's record."""
        ...

    async def get_call(self, call_id: str) -> CallRecord | None:
        """One call's record, or None."""
        ...

    async def list_calls(
        self, start: datetime, end: datetime, *, brief: bool = False
    ) -> Sequence[CallRecord]:
        """Call records that started in [start, end), newest first; `brief` leaves out
        the transcript and the turn log (empty list / dict)."""
        ...

    async def purge(self, *, calls_before: datetime, visits_before: datetime) -> PurgeReport:
        """Retention: delete call records started before `calls_before`; erase name and
        phone of bookings whose visit ended before `visits_before` and delete their calls."""
        ...

    async def forget_phone(self, phone: str) -> PurgeReport:
        """Erase every record of the person with this E.164 phone: bookings anonymized,
        call records that name the phone (in any field) deleted, the files compacted."""
        ...


def open_store(url: str) -> BookingStore:
    """Pick a backend by URL scheme (not yet connected: call `open()`)."""
    if url.startswith("sqlite:"):
        from booking.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from booking.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported booking store URL scheme: {url.split(':', 1)[0]!r}")
