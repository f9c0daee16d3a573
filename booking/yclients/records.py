"""YCLIENTS records: mapping them to `Booking`, and creating one without ever making a
second (the `api_id` lookup before a retry).

`book_record` is not idempotent. After a timeout, a dropped connection or a 5xx the
record may or may not exist, so it is looked up by `api_id` (our call id) in the
master's day; only when it is absent is the request sent again (once), and looked up
once more after that. Any other error is final and mapped for the dialogue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import httpx

from booking.backends.base import BackendConfigError, BackendUnavailable
from booking.catalog import Catalog
from booking.models import Booking
from booking.yclients import wire
from booking.yclients.catalog import CatalogMap
from booking.yclients.client import YclientsClient
from booking.yclients.errors import map_error

log = logging.getLogger(__name__)


def to_booking(r: wire.Record, m: CatalogMap, catalog: Catalog) -> Booking | None:
    """The record as a Booking in catalog ids and the salon's zone; None for a record
    of a service or master outside the matched catalog."""
    service = next((m.service_by_yid[i] for i in r.service_ids if i in m.service_by_yid), None)
    master = m.master_by_yid.get(r.staff_id)
    if service is None or master is None or not r.datetime:
        return None
    tz = catalog.salon.tz
    start = r.start.astimezone(tz)
    minutes = r.seance_length // 60 or catalog.service(service).duration_min
    return Booking(
        id=str(r.id),
        call_id=r.api_id or None,
        service=service,
        master=master,
        start=start,
        end=start + timedelta(minutes=minutes),
        name=r.client_name,
        phone=f"+{r.client_phone}" if r.client_phone else "",
        status="cancelled" if r.deleted else "active",
        seq=1 if r.deleted else 0,  # a calendar client must see the cancellation as newer
    )


async def find_by_api_id(api: YclientsClient, api_id: str, day: date, staff: int) -> int | None:
    """The id of the live record with this `api_id` in the master's day, if any.
    Raises BackendUnavailable when the lookup itself fails."""
    try:
        records = await api.records(day, day, staff_id=staff)
    except (wire.YclientsError, httpx.HTTPError) as e:
        raise BackendUnavailable(f"YCLIENTS lookup after a failed record: {e}") from e
    return next((r.id for r in records if r.api_id == api_id and not r.deleted), None)


async def record_with_lookup(
    api: YclientsClient, body: Mapping[str, Any], api_id: str, day: date, staff: int
) -> int:
    """The new record's id. Raises SlotTaken / InvalidPhone / BackendConfigError /
    BackendUnavailable (see `errors.map_error`)."""
    last: Exception | None = None
    for attempt in range(2):
        if attempt:
            found = await find_by_api_id(api, api_id, day, staff)
            if found is not None:
                log.warning("YCLIENTS: the lost book_record answer had created %s", found)
                return found
        try:
            data = await api.book_record(body)
            return int(data[0].get("record_id") or data[0]["id"])
        except wire.YclientsError as e:
            if not e.retryable:
                err = map_error(e)
                if isinstance(err, BackendConfigError):
                    log.critical("%s", err)
                raise err from e
            last = e
        except httpx.HTTPError as e:  # timeout, reset: did it commit? look it up
            last = e
    found = await find_by_api_id(api, api_id, day, staff)
    if found is not None:
        return found
    raise BackendUnavailable(f"YCLIENTS book_record failed: {last}")
