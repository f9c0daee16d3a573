"""Access checks shared by the salon's handlers: off / not logged in / CSRF."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from aiohttp import web

from booking.web.auth import COOKIE, AdminAuth
from booking.web.render import page

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def salon(request: web.Request) -> dict[str, Any]:
    """The public facts every page header shows."""
    from booking.web import PROVIDER_KEY

    s = request.app[PROVIDER_KEY].catalog.salon
    return {"name": s.name, "address": s.address}


def auth_of(request: web.Request) -> AdminAuth | None:
    """The configured AdminAuth, or None when the page is off."""
    from booking.web import AUTH_KEY

    return request.app[AUTH_KEY]


def csrf_of(request: web.Request) -> str:
    """The CSRF token for this request's session ("" for bearer requests)."""
    auth = auth_of(request)
    session = request.cookies.get(COOKIE)
    return auth.csrf_for(session) if auth and session else ""


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/admin/api/")


def protected(handler: Handler) -> Handler:
    """Off → 503 page; no valid session or bearer → 401 (login page or JSON), no data;
    a cookie-authenticated POST without this session's CSRF token → 403."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        auth = auth_of(request)
        if auth is None:
            if _is_api(request):
                return web.json_response({"error": "admin page is off"}, status=503)
            return page("off.html", status=503, salon=salon(request), nav=None)
        how = auth.who(request)
        if how is None:
            if _is_api(request) or auth.bearer(request) is not None:
                return web.json_response(
                    {"error": "unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="voicebot-admin"'},
                )
            nxt = request.path_qs if request.method == "GET" else "/admin"
            return page("login.html", status=401, salon=salon(request), nav=None, next=nxt)
        if request.method == "POST" and how == "cookie":
            form = await request.post()
            if not auth.csrf_ok(request.cookies.get(COOKIE), str(form.get("csrf", ""))):
                raise web.HTTPForbidden(text="CSRF token missing or wrong; reload the page\n")
        return await handler(request)

    return wrapper
