"""The day view of `/admin`: login, bookings per master, cancel, book by hand.

All bookings are read and written through the provider's booking store (the same
interface the bot uses), so whatever backend is configured is what the page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from booking.availability import local_dt
from booking.models import Booking
from booking.replies import MONTHS_GEN
from booking.web.auth import COOKIE
from booking.web.guard import auth_of, csrf_of, protected, salon
from booking.web.manual import PROBLEMS, ManualBookingError, book_by_hand
from booking.web.render import page

ROW_MIN = 15  # the day grid's row height, minutes
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")


def _provider(request: web.Request) -> Any:
    from booking.web import PROVIDER_KEY

    return request.app[PROVIDER_KEY]


def day_label(d: date) -> str:
    """«вторник, 24 ноября 2026»."""
    return f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS_GEN[d.month - 1]} {d.year}"


def _day_param(request: web.Request, today: date) -> date:
    raw = request.query.get("date") or ""
    if not raw:
        return today
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="date must be YYYY-MM-DD\n") from None


@dataclass(frozen=True, slots=True)
class Block:
    """A booking placed on the day grid: first row (1-based) and row span."""

    booking: Booking
    service: str
    row: int
    span: int


def place(
    bookings: Sequence[Booking], opens: datetime, rows: int, names: dict[str, str]
) -> list[Block]:
    """Grid rows of each booking, clipped to the day's rows."""
    out = []
    for b in bookings:
        first = int((b.start - opens).total_seconds() // 60 // ROW_MIN)
        last = int(-(-(b.end - opens).total_seconds() // 60 // ROW_MIN))
        first, last = max(0, first), min(rows, max(last, first + 1))
        out.append(Block(b, names.get(b.service, b.service), first + 1, max(1, last - first)))
    return out


async def _day_bookings(request: web.Request, day: date) -> list[Booking]:
    p = _provider(request)
    start = local_dt(p.catalog, day, time(0))
    return list(await p.backend.list_between(start, start + timedelta(days=1)))


@protected
async def day_view(request: web.Request) -> web.Response:
    """`/admin?date=YYYY-MM-DD`: one column per master, bookings as blocks."""
    p = _provider(request)
    cat = p.catalog
    today = datetime.now(cat.salon.tz).date()
    day = _day_param(request, today)
    opens = local_dt(cat, day, min(m.hours.open for m in cat.masters))
    closes = local_dt(cat, day, max(m.hours.close for m in cat.masters))
    rows = max(1, int((closes - opens).total_seconds() // 60 // ROW_MIN))
    bookings = await _day_bookings(request, day)
    names = {s.id: s.name for s in cat.services}
    blocks = place(bookings, opens, rows, names)
    by_master: dict[str, list[Block]] = {m.name: [] for m in cat.masters}
    for blk in blocks:
        by_master.setdefault(blk.booking.master, []).append(blk)
    marks = [
        {"row": 1 + i * 60 // ROW_MIN, "label": f"{(opens + timedelta(hours=i)).hour:02d}:00"}
        for i in range(rows * ROW_MIN // 60)
    ]
    return page(
        "day.html",
        salon=salon(request),
        nav="day",
        csrf=csrf_of(request),
        day=day.isoformat(),
        day_label=day_label(day),
        is_today=day == today,
        prev_day=(day - timedelta(days=1)).isoformat(),
        next_day=(day + timedelta(days=1)).isoformat(),
        masters=cat.masters,
        services=cat.services,
        by_master=by_master,
        bookings=bookings,
        rows=rows,
        hour_marks=marks,
        form_time=request.query.get("time", ""),
        flash=_flash(request),
        error=PROBLEMS.get(request.query.get("error", ""), ""),
    )


async def _booking_or_404(request: web.Request) -> Booking:
    b = await _provider(request).backend.get(request.match_info["id"])
    if b is None:
        raise web.HTTPNotFound(text="no such booking\n")
    return b


@protected
async def show_booking(request: web.Request) -> web.StreamResponse:
    """`/admin/bookings/{id}`: the booking on its day (links from call notes)."""
    b = await _booking_or_404(request)
    raise web.HTTPSeeOther(f"/admin?date={b.start.date().isoformat()}#b-{b.id}")


@protected
async def cancel_form(request: web.Request) -> web.Response:
    """The confirmation step before a cancellation."""
    b = await _booking_or_404(request)
    if b.status != "active":
        raise web.HTTPSeeOther(f"/admin?date={b.start.date()}")
    cat = _provider(request).catalog
    return page(
        "cancel.html",
        salon=salon(request),
        nav="day",
        csrf=csrf_of(request),
        booking=b,
        service=next((s.name for s in cat.services if s.id == b.service), b.service),
        day=b.start.date().isoformat(),
        day_label=day_label(b.start.date()),
    )


@protected
async def cancel(request: web.Request) -> web.StreamResponse:
    """Cancel (the store bumps its change counter, so calendars see it)."""
    b = await _booking_or_404(request)
    done = await _provider(request).backend.cancel(b.id)
    if _wants_json(request):
        return web.json_response({"cancelled": done is not None, "id": b.id})
    raise web.HTTPSeeOther(
        _day_url(b.start.date(), done="cancelled" if done else "was_cancelled", id=b.id)
    )


@protected
async def create(request: web.Request) -> web.StreamResponse:
    """Book by hand through the bot's availability and no-double-booking path."""
    p = _provider(request)
    form = await request.post()
    now = datetime.now(p.catalog.salon.tz)
    try:
        day = date.fromisoformat(str(form.get("date", "")))
        at = time.fromisoformat(str(form.get("time", "")))
    except ValueError:
        raise web.HTTPSeeOther(_day_url(now.date(), error="no_time")) from None
    try:
        b = await book_by_hand(
            p.catalog,
            p.backend,
            service=str(form.get("service", "")),
            master=str(form.get("master", "")) or None,
            day=day,
            at=at,
            name=str(form.get("name", "")),
            phone=str(form.get("phone", "")),
            now=now,
        )
    except ManualBookingError as e:
        if _wants_json(request):
            return web.json_response({"error": str(e)}, status=409)
        raise web.HTTPSeeOther(_day_url(day, error=e.code)) from None
    if _wants_json(request):
        return web.json_response(b.to_json(), status=201)
    raise web.HTTPSeeOther(_day_url(day, done="booked", id=b.id))


@protected
async def reveal_phone(request: web.Request) -> web.Response:
    """The full phone of one booking: the page shows it only when clicked."""
    b = await _booking_or_404(request)
    return web.json_response({"id": b.id, "phone": b.phone}, headers={"Cache-Control": "no-store"})


@protected
async def api_day(request: web.Request) -> web.Response:
    """`/admin/api/day?date=…`: the day's active bookings as JSON (for scripts)."""
    p = _provider(request)
    day = _day_param(request, datetime.now(p.catalog.salon.tz).date())
    names = {s.id: s.name for s in p.catalog.services}
    bookings = await _day_bookings(request, day)
    return web.json_response([b.to_json(names.get(b.service)) for b in bookings])


async def login(request: web.Request) -> web.StreamResponse:
    """POST the token; a right one sets the session cookie, a wrong one is a 401."""
    auth = auth_of(request)
    if auth is None:
        return page("off.html", status=503, salon=salon(request), nav=None)
    form = await request.post()
    nxt = str(form.get("next") or "/admin")
    if not nxt.startswith("/admin") or nxt.startswith("//"):
        nxt = "/admin"  # no open redirect
    if not auth.token_ok(str(form.get("token", ""))):
        return page(
            "login.html",
            status=401,
            salon=salon(request),
            nav=None,
            next=nxt,
            error="Неверный токен.",
        )
    response = web.HTTPSeeOther(nxt)
    auth.set_cookie(response, request)
    raise response


async def login_form(request: web.Request) -> web.StreamResponse:
    """GET /admin/login."""
    if auth_of(request) is None:
        return page("off.html", status=503, salon=salon(request), nav=None)
    return page("login.html", salon=salon(request), nav=None, next="/admin")


@protected
async def logout(request: web.Request) -> web.StreamResponse:
    """Drop the session cookie."""
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path="/admin")
    raise response


_DONE = {
    "cancelled": "Запись {id} отменена.",
    "was_cancelled": "Запись {id} уже была отменена.",
    "booked": "Записано: {id}.",
}


def _flash(request: web.Request) -> str:
    """The fixed sentence for `?done=…&id=…` (nothing free-form from the URL is shown)."""
    template = _DONE.get(request.query.get("done", ""))
    bid = request.query.get("id", "")
    if template is None or not (bid.isalnum() and len(bid) <= 12):
        return ""
    return template.format(id=bid)


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _day_url(day: date, **params: str) -> str:
    from urllib.parse import urlencode

    return f"/admin?{urlencode({'date': day.isoformat(), **params})}"


def add_routes(app: web.Application) -> None:
    """Register the day view, login and booking routes."""
    app.router.add_get("/admin", day_view)
    app.router.add_get("/admin/", day_view)
    app.router.add_get("/admin/login", login_form)
    app.router.add_post("/admin/login", login)
    app.router.add_post("/admin/logout", logout)
    app.router.add_post("/admin/bookings", create)
    app.router.add_get("/admin/bookings/{id}", show_booking)
    app.router.add_get("/admin/bookings/{id}/cancel", cancel_form)
    app.router.add_post("/admin/bookings/{id}/cancel", cancel)
    app.router.add_get("/admin/api/bookings/{id}/phone", reveal_phone)
    app.router.add_get("/admin/api/day", api_day)
