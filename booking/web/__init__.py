"""The salon's own web pages, mounted by the booking provider's `extra_routes` hook.

The engine knows nothing about salons; `voicebot serve` only offers them its app:

- `/admin`: day view, calls, numbers (booking/web/admin.py, calls.py), behind
  env VOICEBOT_ADMIN_TOKEN (booking/web/auth.py); off, with a page saying how to turn
  it on, when the variable is unset;
- `/calendar.ics?token=…`: the read-only iCalendar feed (booking/web/calendar.py),
  behind env VOICEBOT_CALENDAR_TOKEN; 404 when unset;
- the daily retention purge (booking/privacy/retention.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from booking.web.auth import AdminAuth

if TYPE_CHECKING:
    from booking.bot import BookingProvider

STATIC = Path(__file__).resolve().parent / "static"
PROVIDER_KEY = web.AppKey("booking_provider", object)
AUTH_KEY = web.AppKey("admin_auth", object)
CAL_TOKEN_KEY = web.AppKey("calendar_token", str)


def mount(
    app: web.Application, provider: BookingProvider, env: dict[str, str] | None = None
) -> None:
    """Add the salon's routes to `app`; tokens come from `env` (default os.environ)."""
    from booking.privacy.retention import add_daily_purge
    from booking.web import admin, calendar_route, calls

    env = dict(os.environ) if env is None else env
    token = env.get("VOICEBOT_ADMIN_TOKEN", "").strip()
    app[PROVIDER_KEY] = provider
    app[AUTH_KEY] = AdminAuth(token) if token else None
    app[CAL_TOKEN_KEY] = env.get("VOICEBOT_CALENDAR_TOKEN", "").strip()
    admin.add_routes(app)
    calls.add_routes(app)
    calendar_route.add_routes(app)
    app.router.add_static("/admin/static/", STATIC, append_version=False)
    add_daily_purge(app, provider)
