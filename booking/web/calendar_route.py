"""`GET /calendar.ics?token=…[&master=…]`: the bookings feed for calendar apps.

Calendar apps subscribe by URL and cannot send headers, so the read-only token rides in
the query string (env VOICEBOT_CALENDAR_TOKEN, separate from the admin token so a leaked
feed URL grants no write access). Wrong or missing token: 401, no data. Feature off
(no token configured): 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from aiohttp import web

from booking.models import Booking
from booking.web.calendar import feed

FEED_PAST_DAYS = 31
FEED_FUTURE_DAYS = 366
# Per master filter ("" = all): (fingerprint of the bookings, body, ETag). Calendar apps
# poll; building a feed of 2000 events costs ~0.5 s of CPU in the library, so an
# unchanged feed is served from here, and a changed one is built off the event loop.
CACHE_KEY = web.AppKey("calendar_cache", dict)


def _fingerprint(bookings: Sequence[Booking]) -> tuple[object, ...]:
    return tuple(
        (b.id, b.seq, b.status, b.start, b.end, b.master, b.service, b.name, b.phone)
        for b in bookings
    )


async def calendar_ics(request: web.Request) -> web.Response:
    """The feed: bookings from a month ago to a year ahead, cancelled ones included."""
    from booking.web import CAL_TOKEN_KEY, PROVIDER_KEY

    expected = request.app[CAL_TOKEN_KEY]
    if not expected:
        raise web.HTTPNotFound(text="calendar feed is off: set VOICEBOT_CALENDAR_TOKEN\n")
    given = request.query.get("token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPUnauthorized(text="wrong or missing calendar token\n")
    provider = request.app[PROVIDER_KEY]
    catalog = provider.catalog
    master = request.query.get("master") or None
    if master is not None:
        try:
            master = catalog.master(master).name
        except KeyError:
            raise web.HTTPNotFound(text="no such master\n") from None
    now = datetime.now(catalog.salon.tz)
    bookings = await provider.backend.list_between(
        now - timedelta(days=FEED_PAST_DAYS),
        now + timedelta(days=FEED_FUTURE_DAYS),
        master=master,
        include_cancelled=True,
    )
    cache: dict[str, tuple[tuple[object, ...], bytes, str]] = request.app[CACHE_KEY]
    fingerprint = _fingerprint(bookings)
    hit = cache.get(master or "")
    if hit is not None and hit[0] == fingerprint:
        body, etag = hit[1], hit[2]
    else:
        body = await asyncio.to_thread(feed, bookings, catalog, master=master)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache[master or ""] = (fingerprint, body, etag)
    headers = {
        "Cache-Control": "private, no-cache",
        "ETag": etag,
        "Content-Disposition": "inline; filename=salon.ics",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="text/calendar", charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    """Register the feed route (and its cache)."""
    app[CACHE_KEY] = {}
    app.router.add_get("/calendar.ics", calendar_ics)
