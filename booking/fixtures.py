"""Bookings seeded from a dialogue file's `setup:` (tests and `voicebot simulate`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from booking.catalog import Catalog
from booking.extract.phone import normalize_phone
from booking.models import NewBooking


def fixture_bookings(catalog: Catalog, setup: Mapping[str, Any]) -> list[NewBooking]:
    """`setup["bookings"]` as new bookings: start (ISO; salon time when naive), service
    id, master name, optional name, phone and call id. Raises KeyError for an unknown
    service or master."""
    tz = catalog.salon.tz
    out = []
    for raw in setup.get("bookings") or ():
        start = datetime.fromisoformat(str(raw["start"]))
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
        start = start.astimezone(tz)
        service = catalog.service(str(raw["service"]))
        phone = str(raw.get("phone", ""))
        out.append(
            NewBooking(
                service=service.id,
                master=catalog.master(str(raw["master"])).name,
                start=start,
                end=start + timedelta(minutes=service.duration_min),
                name=str(raw.get("name", "Клиент")),
                phone=normalize_phone(phone) or phone,
                call_id=raw.get("call_id"),
            )
        )
    return out
