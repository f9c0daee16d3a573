"""The booking backend protocol: what the dialogue (and the admin page) ask of the place
where the salon's bookings live.

Two implementations: `LocalBackend` (this project's own SQLite/PostgreSQL store, whose
no-double-booking guarantees live in the store) and `YclientsBackend` (the salon's
YCLIENTS/Altegio account). The catalog ids and master names are always the ones of the
`booking:` config section, so the extractor's synonyms work unchanged; a backend maps
them to its own ids.

Errors every backend raises (besides `SlotTaken` from booking.models):
`InvalidPhone` (the CRM refused the number: ask again), `BackendUnavailable` (down,
licence expired, 5xx: hand the caller to a person, never say «записали»),
`BackendConfigError` (the salon's settings make booking impossible: fail at start).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal, Protocol

from booking.availability import Option, Problem
from booking.catalog import Catalog
from booking.models import Booking, NewBooking, StoreError
from booking.notify.message import Notification

BackendKind = Literal["local", "yclients"]


class BackendUnavailable(StoreError):
    """The backend cannot take bookings now (network, HTTP 5xx, licence expired)."""


class InvalidPhone(StoreError):
    """The backend refused the client's phone number (YCLIENTS code 431)."""


class BackendConfigError(StoreError):
    """The salon's account is set up so that the bot cannot book (e.g. YCLIENTS requires
    an SMS code, 432; unknown company; bad tokens). Raised at start where possible."""


class BookingBackend(Protocol):
    """Catalog, availability, create, cancel and lookups for one salon.

    Times are timezone-aware datetimes in the salon's zone; durations come from the
    catalog (minutes). Every method may raise `BackendUnavailable`.
    """

    kind: BackendKind

    @property
    def catalog(self) -> Catalog:
        """Services (duration in minutes, price in roubles), masters and which services
        they do. May be refreshed in the background; read it per call, not once."""
        ...

    async def open(self) -> None:
        """Connect, load the catalog; raises `BackendConfigError` for a setup that
        cannot work."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...

    async def check(
        self, service: str, start: datetime, now: datetime, master: str | None = None
    ) -> tuple[str | None, Problem | None]:
        """(a free master's name, None) or (None, why not: past/closed/taken/no_master).
        With no master, the first free one. The read-back follows a positive check."""
        ...

    async def free_starts(
        self, service: str, day: date, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Every free (start, master) that day, in time then catalog order."""
        ...

    async def nearest(
        self, service: str, wanted: datetime, now: datetime, master: str | None = None
    ) -> list[Option]:
        """Up to three alternatives close to `wanted` (same time with another master,
        the nearest times that day, then the next days)."""
        ...

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """Book durably, or raise `SlotTaken` / `InvalidPhone` / `BackendUnavailable`.

        Idempotent per `booking.call_id`: a retry returns the first booking. `notify`
        rows are enqueued in the outbox with the booking (same transaction where the
        backend is the local store, right after the CRM confirmed otherwise).
        """
        ...

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """Cancel an active booking; None when there is no active one with this id."""
        ...

    async def find_by_phone(
        self, phone: str, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """Active bookings for an E.164 phone, ending after `after` when given."""
        ...

    async def list_between(
        self,
        start: datetime,
        end: datetime,
        *,
        master: str | None = None,
        include_cancelled: bool = False,
    ) -> Sequence[Booking]:
        """Bookings overlapping [start, end): active ones (the admin page's day view),
        and cancelled ones too when `include_cancelled` (the calendar feed)."""
        ...

    async def get(self, booking_id: str) -> Booking | None:
        """One booking by id, any status; None when unknown."""
        ...
