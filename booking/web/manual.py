"""A booking made by hand on the salon's page, through the bot's own path: the booking
backend's availability check (hours, duration, past, the master's services, existing
bookings) and its commit, which refuses a double booking (`SlotTaken`), in the local
store or in YCLIENTS alike."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from booking.availability import local_dt
from booking.backends.base import BookingBackend
from booking.catalog import Catalog
from booking.extract.phone import normalize_phone
from booking.models import Booking, NewBooking, SlotTaken

# Why a booking by hand was refused: a code (it travels in the redirect's query string,
# so the page only ever shows one of these fixed sentences) and its words.
PROBLEMS = {
    "past": "Это время уже прошло.",
    "closed": "В это время салон не работает (услуга должна закончиться до закрытия).",
    "taken": "Это время занято.",
    "no_master": "Этот мастер не делает эту услугу.",
    "no_service": "Нет такой услуги.",
    "unknown_master": "Нет такого мастера.",
    "bad_phone": "Номер телефона не распознан.",
    "no_name": "Нужно имя клиента.",
    "no_time": "Нужны дата и время.",
    "unavailable": "Это время недоступно.",
}


class ManualBookingError(ValueError):
    """Why a booking by hand was refused: `code` is a key of PROBLEMS; str() is the
    sentence for the page (Russian)."""

    def __init__(self, code: str) -> None:
        self.code = code if code in PROBLEMS else "unavailable"
        super().__init__(PROBLEMS[self.code])


async def book_by_hand(
    catalog: Catalog,
    backend: BookingBackend,
    *,
    service: str,
    master: str | None,
    day: date,
    at: time,
    name: str,
    phone: str,
    now: datetime,
) -> Booking:
    """Check and commit one booking; raises ManualBookingError with the reason."""
    try:
        svc = catalog.service(service)
    except KeyError:
        raise ManualBookingError("no_service") from None
    if master:
        try:
            master = catalog.master(master).name
        except KeyError:
            raise ManualBookingError("unknown_master") from None
    e164 = normalize_phone(phone)
    if e164 is None:
        raise ManualBookingError("bad_phone")
    name = " ".join(name.split())[:80]
    if not name:
        raise ManualBookingError("no_name")
    start = local_dt(catalog, day, at)
    free_master, problem = await backend.check(service, start, now, master)
    if free_master is None:
        raise ManualBookingError(problem or "unavailable")
    try:
        return await backend.create(
            NewBooking(
                service=svc.id,
                master=free_master,
                start=start,
                end=start + timedelta(minutes=svc.duration_min),
                name=name,
                phone=e164,
            )
        )
    except SlotTaken:
        raise ManualBookingError("taken") from None
