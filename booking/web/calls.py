"""`/admin/calls`, `/admin/calls/{id}` and `/admin/numbers`: every call, one call, and
the per-day figures (drawn by the vendored Chart.js from a JSON island)."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from booking.availability import local_dt
from booking.web.admin import day_label
from booking.web.callview import OUTCOMES, row, slot_trouble
from booking.web.guard import csrf_of, protected, salon
from booking.web.numbers import per_day
from booking.web.render import page

MAX_DAYS = 92


def _provider(request: web.Request) -> Any:
    from booking.web import PROVIDER_KEY

    return request.app[PROVIDER_KEY]


def _date(raw: str | None, default: date) -> date:
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="date must be YYYY-MM-DD\n") from None


@protected
async def calls_list(request: web.Request) -> web.Response:
    """Calls of one day (`?date=`, today by default), newest first."""
    p = _provider(request)
    today = datetime.now(p.catalog.salon.tz).date()
    day = _date(request.query.get("date"), today)
    start = local_dt(p.catalog, day, time(0))
    calls = await p.store.list_calls(start, start + timedelta(days=1), brief=True)
    rows = [row(c) for c in calls]
    tz = p.catalog.salon.tz
    for r in rows:
        r["time"] = r["started_at"].astimezone(tz).strftime("%H:%M")
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response([{**r, "started_at": r["started_at"].isoformat()} for r in rows])
    return page(
        "calls.html",
        salon=salon(request),
        nav="calls",
        csrf=csrf_of(request),
        day=day.isoformat(),
        day_label=day_label(day),
        prev_day=(day - timedelta(days=1)).isoformat(),
        next_day=(day + timedelta(days=1)).isoformat(),
        calls=rows,
    )


@protected
async def call_detail(request: web.Request) -> web.Response:
    """One call: summary, transcript, booking, slot trouble, notes."""
    p = _provider(request)
    call = await p.store.get_call(request.match_info["id"])
    if call is None:
        raise web.HTTPNotFound(text="no such call\n")
    booking = await p.backend.get(call.booking_id) if call.booking_id else None
    tz = p.catalog.salon.tz
    names = {s.id: s.name for s in p.catalog.services}
    return page(
        "call.html",
        salon=salon(request),
        nav="calls",
        csrf=csrf_of(request),
        call=call,
        info=row(call),
        started=call.started_at.astimezone(tz),
        trouble=slot_trouble(call),
        booking=booking,
        service=names.get(booking.service, booking.service) if booking else "",
        notes=call.stats.get("notes") or [],
        transcript=call.transcript,
    )


@protected
async def numbers(request: web.Request) -> web.Response:
    """Per-day figures for the last `?days=` days (14 by default, at most 92)."""
    p = _provider(request)
    tz = p.catalog.salon.tz
    today = datetime.now(tz).date()
    try:
        days = min(MAX_DAYS, max(1, int(request.query.get("days", "14"))))
    except ValueError:
        raise web.HTTPBadRequest(text="days must be a number\n") from None
    first = today - timedelta(days=days - 1)
    start = local_dt(p.catalog, first, time(0))
    calls = await p.store.list_calls(
        start, local_dt(p.catalog, today + timedelta(days=1), time(0)), brief=True
    )
    # Thousands of call records: aggregate off the event loop that carries live calls.
    figures = await asyncio.to_thread(per_day, calls, first, today, tz)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(figures)
    total = sum(f["calls"] for f in figures)
    booked = sum(f["booked"] for f in figures)
    return page(
        "numbers.html",
        salon=salon(request),
        nav="numbers",
        csrf=csrf_of(request),
        days=days,
        figures=figures,
        figures_json=json.dumps(figures),
        total=total,
        booked=booked,
        handoffs=sum(f["handoffs"] for f in figures),
        rate=round(100 * booked / total) if total else None,
        outcomes=OUTCOMES,
    )


def add_routes(app: web.Application) -> None:
    """Register the calls and numbers routes."""
    app.router.add_get("/admin/calls", calls_list)
    app.router.add_get("/admin/calls/{id}", call_detail)
    app.router.add_get("/admin/numbers", numbers)
