"""The bookings as an iCalendar feed (RFC 5545), built with the `icalendar` library.

One VEVENT per booking. UID is the booking id at a fixed domain, so it never changes;
SEQUENCE is the booking's change counter (RFC 5545 3.8.7.4: "incremented each time the
Organizer makes a significant revision"), so a cancellation (STATUS:CANCELLED, 3.8.1.11)
outranks the event a client saw before. DTSTART/DTEND carry the salon's TZID and the
calendar its VTIMEZONE (`add_missing_timezones`). Phones are masked: a calendar app
syncs to third-party clouds, so the feed holds no more than staff need to recognize
the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar, Event

from booking.catalog import Catalog
from booking.models import Booking
from voicebot.redact import mask_number

UID_DOMAIN = "voicebot.local"
PRODID = "-//voicebot//salon bookings//RU"


def booking_event(b: Booking, catalog: Catalog, stamp: datetime) -> Event:
    """The VEVENT of one booking (active or cancelled)."""
    try:
        service = catalog.service(b.service).name
    except KeyError:
        service = b.service
    ev = Event()
    ev.add("uid", f"{b.id}@{UID_DOMAIN}")
    ev.add("dtstamp", stamp)
    ev.add("dtstart", b.start.astimezone(catalog.salon.tz))
    ev.add("dtend", b.end.astimezone(catalog.salon.tz))
    ev.add("sequence", b.seq)
    who = b.name or "клиент (данные удалены)"
    ev.add("summary", f"{service} — {who} ({b.master})")
    lines = [f"Запись {b.id}", f"Мастер: {b.master}", f"Услуга: {service}"]
    if b.phone:
        lines.append(f"Телефон: {mask_number(b.phone)} (полностью — на странице салона)")
    ev.add("description", "\n".join(lines))
    ev.add("location", catalog.salon.address)
    ev.add("status", "CANCELLED" if b.status == "cancelled" else "CONFIRMED")
    ev.add("transp", "OPAQUE")
    if b.created_at is not None:
        ev.add("created", b.created_at.astimezone(UTC))
    return ev


def feed(
    bookings: Iterable[Booking],
    catalog: Catalog,
    *,
    master: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The whole VCALENDAR as bytes (CRLF lines, folded at 75 octets by the library)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    title = f"{catalog.salon.name}: записи" + (f" — {master}" if master else "")
    cal.add("x-wr-calname", title)
    cal.add("x-wr-timezone", catalog.salon.timezone)
    # Apple and Outlook honour this refresh hint; Google ignores it (docs/integrations.md).
    cal.add("refresh-interval", timedelta(minutes=15), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT15M")
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    years = [stamp.year]
    for b in bookings:
        if master is None or b.master == master:
            cal.add_component(booking_event(b, catalog, stamp))
            years.append(b.start.year)
    # The VTIMEZONE's rules cover every event's year (the library cuts them to a range).
    cal.add_missing_timezones(
        first_date=date(min(years) - 1, 1, 1), last_date=date(max(years) + 2, 1, 1)
    )
    if not cal.timezones:  # no events yet: still declare the salon's zone
        from icalendar import Timezone

        cal.add_component(Timezone.from_tzid(catalog.salon.timezone))
    return cal.to_ical()
