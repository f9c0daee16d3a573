"""`GET /calendar.ics?token=…[&master=…]`: the bookings feed for calendar apps.

Calendar apps subscribe by URL and cannot send headers, so the read-only token rides in
the query string (env VOICEBOT_CALENDAR_TOKEN, separate from the admin token so a leaked
feed URL grants no write access). Wrong or missing token: 401, no data. Feature off
(no token configured): 404.
"""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from aiohttp import web

from booking.web.calendar import feed

FEED_PAST_DAYS = 31
FEED_FUTURE_DAYS = 366


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
    body = feed(bookings, catalog, master=master)
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Disposition": "inline; filename=salon.ics"},
    )


def add_routes(app: web.Application) -> None:
    """Register the feed route."""
    app.router.add_get("/calendar.ics", calendar_ics)
