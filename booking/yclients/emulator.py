"""A local YCLIENTS/Altegio API emulator: a TEST DOUBLE, not YCLIENTS.

It serves the endpoints the bot uses with the real paths, JSON shapes and
`success/data/meta` envelope, checks the two-token Authorization and the versioned
Accept header, answers with the real error codes (431/432/433/435/436/437/438, 401, 402,
404) and enforces the rate limit (5 requests per rolling second per client IP → 429).
Tests and `voicebot simulate`/`serve` (`booking.yclients.base_url: emulator`) use it
offline; `voicebot yclients-emulator --port P` runs it alone for a demo.

Test hooks: `fail_next(path_part, status, code)` queues an error answer,
`drop_record_responses` commits the next book_record(s) and drops the connection
before answering (a lost response), `calls` logs every request.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from booking.catalog import Catalog
from booking.yclients import wire
from booking.yclients.emulator_state import BookingRefused, Company, EmuService, EmuStaff

log = logging.getLogger(__name__)

ACCEPTED = set(wire.ACCEPT.values())
USER_PATHS = ("/records/", "/record/")


@dataclass
class Call:
    """One request the emulator received (for tests)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]


class YclientsEmulator:
    """The HTTP server around one `Company`."""

    def __init__(
        self,
        company: Company,
        *,
        partner_token: str | None = None,
        user_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 5,
        form_id: int = 1,
    ) -> None:
        self.company = company
        self.partner_token = partner_token or f"emu-partner-{secrets.token_hex(8)}"
        self.user_token = user_token or f"emu-user-{secrets.token_hex(8)}"
        self.host, self.port = host, port
        self.rate_limit = rate_limit
        self.form_id = form_id
        self.calls: list[Call] = []
        self.throttled = 0
        self.drop_record_responses = 0
        self.licence_expired = False
        self._failures: list[tuple[str, int, int, str]] = []
        self._window: dict[str, collections.deque[float]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def company_id(self) -> int:
        """The emulated company's id."""
        return self.company.id

    @property
    def url(self) -> str:
        """The API root, e.g. http://127.0.0.1:PORT/api/v1."""
        return f"http://{self.host}:{self.port}/api/v1"

    @classmethod
    def from_catalog(
        cls, catalog: Catalog, *, timezone: str | None = None, **kw: Any
    ) -> YclientsEmulator:
        """A company seeded from a config catalog: services 1.., staff 101..."""
        services = [
            EmuService(i + 1, s.name, s.price, s.price, s.duration_min * 60)
            for i, s in enumerate(catalog.services)
        ]
        sid = {s.id: i + 1 for i, s in enumerate(catalog.services)}
        staff = [
            EmuStaff(
                101 + i,
                m.name,
                {sid[x]: services[sid[x] - 1].seance_length for x in m.services if x in sid},
                m.hours.open,
                m.hours.close,
            )
            for i, m in enumerate(catalog.masters)
        ]
        company = Company(
            id=kw.pop("company_id", 4242),
            title=catalog.salon.name,
            timezone=timezone or catalog.salon.timezone,
            services=services,
            staff=staff,
            step_min=catalog.slot_step_min,
        )
        return cls(company, **kw)

    def fail_next(self, path_part: str, status: int, code: int = 0, message: str = "") -> None:
        """The next request whose path contains `path_part` gets this error answer."""
        self._failures.append((path_part, status, code, message or f"emulated {status}"))

    def book_record_calls(self) -> list[Call]:
        """The book_record requests received so far."""
        return [c for c in self.calls if c.method == "POST" and "/book_record/" in c.path]

    # ------------------------------------------------------------------ server

    async def start(self) -> None:
        """Listen on loopback (port 0: a free one)."""
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v1/book_services/{cid}", self._book_services)
        r.add_get("/api/v1/book_staff/{cid}", self._book_staff)
        r.add_get("/api/v1/book_dates/{cid}", self._book_dates)
        r.add_get("/api/v1/book_times/{cid}/{staff}/{day}", self._book_times)
        r.add_post("/api/v1/book_check/{cid}", self._book_check)
        r.add_post("/api/v1/book_record/{cid}", self._book_record)
        r.add_get("/api/v1/records/{cid}", self._records)
        r.add_get("/api/v1/record/{cid}/{rid}", self._record)
        r.add_delete("/api/v1/record/{cid}/{rid}", self._delete)
        r.add_get("/api/v1/bookform/{fid}", self._bookform)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _error(status: int, message: str, code: int = 0) -> web.Response:
        return web.json_response(wire.error_envelope(message, code), status=status)

    def _limited(self, ip: str) -> bool:
        now = asyncio.get_running_loop().time()
        window = self._window.setdefault(ip, collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            return True
        window.append(now)
        return False

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._error(400, "Неверный JSON")
        self.calls.append(
            Call(
                request.method,
                request.path,
                list(request.query.items()),
                body,
                dict(request.headers),
            )
        )
        if self._limited(request.remote or "?"):
            self.throttled += 1
            return self._error(429, "Превышен лимит запросов")
        if request.headers.get("Accept") not in ACCEPTED:
            return self._error(400, "Укажите Accept: application/vnd.yclients.v2+json")
        partner, user = wire.parse_auth(request.headers.get("Authorization", ""))
        if partner != self.partner_token:
            return self._error(401, "Partner authentication failed")
        if any(p in request.path for p in USER_PATHS) and user != self.user_token:
            return self._error(401, "User authentication failed")
        cid = request.match_info.get("cid")
        if cid is not None and cid != str(self.company.id):
            return self._error(404, "Компания не найдена")
        if self.licence_expired:
            return self._error(402, "Лицензия филиала истекла")
        for i, (part, status, code, message) in enumerate(self._failures):
            if part in request.path:
                del self._failures[i]
                return self._error(status, message, code)
        try:
            return await handler(request)
        except BookingRefused as e:
            return self._error(e.status, e.message, e.code)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        # Parsed (and validated) once by the middleware; aiohttp caches the bytes.
        body = await request.json() if request.body_exists else None
        return dict(body) if isinstance(body, dict) else {}

    @staticmethod
    def _ok(data: Any, meta: Any = None, status: int = 200) -> web.Response:
        return web.json_response(wire.envelope(data, meta), status=status)

    @staticmethod
    def _ids(request: web.Request) -> list[int]:
        return [int(v) for k, v in request.query.items() if k in ("service_ids[]", "service_ids")]

    # ------------------------------------------------------------------ handlers

    async def _book_services(self, request: web.Request) -> web.Response:
        c = self.company
        staff = c.staff_by_id(int(request.query.get("staff_id") or 0))
        items = []
        for s in c.services:
            if staff is not None and s.id not in staff.services:
                continue
            items.append(
                {
                    "id": s.id,
                    "title": s.title,
                    "category_id": 1,
                    "price_min": s.price_min,
                    "price_max": s.price_max,
                    "discount": 0,
                    "comment": "",
                    "weight": 0,
                    "active": 1,
                    "sex": 0,
                    "image": "",
                    "prepaid": "forbidden",
                    # Filled only with a staff filter, as in the real API.
                    "seance_length": staff.services[s.id] if staff is not None else 0,
                }
            )
        category = [{"id": 1, "title": "Услуги", "sex": 0, "api_id": "", "weight": 0}]
        return self._ok({"events": [], "services": items, "category": category})

    async def _book_staff(self, request: web.Request) -> web.Response:
        wanted = self._ids(request)
        out = [
            {
                "id": st.id,
                "name": st.name,
                "specialization": "Мастер",
                "avatar": "",
                "rating": 5,
                "votes_count": 0,
                "bookable": st.bookable,
                "information": "",
                "seance_date": None,
            }
            for st in self.company.staff
            if all(i in st.services for i in wanted)
        ]
        return self._ok(out)

    async def _book_dates(self, request: web.Request) -> web.Response:
        staff_id = int(request.query.get("staff_id") or 0)
        dates = self.company.free_dates(self._ids(request), staff_id)
        days: dict[str, list[int]] = {}
        for d in dates:
            days.setdefault(str(d.month), []).append(d.day)
        iso = [d.isoformat() for d in dates]
        return self._ok(
            {"booking_days": days, "booking_dates": iso, "working_days": days, "working_dates": iso}
        )

    async def _book_times(self, request: web.Request) -> web.Response:
        try:
            day = date.fromisoformat(request.match_info["day"])
        except ValueError:
            return self._error(422, "Неверный формат даты")
        staff_id = int(request.match_info["staff"])
        if staff_id and self.company.staff_by_id(staff_id) is None:
            return self._error(404, "Сотрудник не найден")
        return self._ok(self.company.free_times(staff_id, day, self._ids(request)))

    async def _book_check(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.company.check(list(body.get("appointments") or ()))
        return web.Response(status=201)

    async def _book_record(self, request: web.Request) -> web.StreamResponse:
        data = self.company.book(await self._body(request))
        if self.drop_record_responses > 0:
            self.drop_record_responses -= 1
            # Committed, but the answer is lost on the way (a timeout or reset).
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        return self._ok(data, status=201)

    async def _records(self, request: web.Request) -> web.Response:
        c = self.company
        q = request.query
        start = date.fromisoformat(q.get("start_date") or "1970-01-01")
        end = date.fromisoformat(q.get("end_date") or "2999-12-31")
        staff_id = int(q.get("staff_id") or 0)
        with_deleted = q.get("with_deleted") in ("1", "true")
        page, count = max(1, int(q.get("page") or 1)), min(200, int(q.get("count") or 50))
        picked = [
            r
            for r in sorted(c.records, key=lambda r: (r.start, r.id))
            if (with_deleted or not r.deleted)
            and start <= r.start.astimezone(c.tz).date() <= end
            and (not staff_id or r.staff_id == staff_id)
        ]
        chunk = picked[(page - 1) * count : page * count]
        return self._ok(
            [c.record_json(r) for r in chunk], {"page": page, "total_count": len(picked)}
        )

    def _find(self, request: web.Request) -> Any:
        rid = int(request.match_info["rid"])
        return next((r for r in self.company.records if r.id == rid), None)

    async def _record(self, request: web.Request) -> web.Response:
        r = self._find(request)
        if r is None:
            return self._error(404, "Запись не найдена")
        return self._ok(self.company.record_json(r))

    async def _delete(self, request: web.Request) -> web.Response:
        r = self._find(request)
        if r is None or r.deleted:
            return self._error(404, "Запись не найдена")
        r.deleted = True
        return web.Response(status=204)

    async def _bookform(self, request: web.Request) -> web.Response:
        if request.match_info["fid"] != str(self.form_id):
            return self._error(404, "Форма не найдена")
        return self._ok(
            {
                "id": self.form_id,
                "company_id": self.company.id,
                "phone_confirmation": self.company.sms_confirm,
            }
        )


def run_cli(args: argparse.Namespace) -> int:
    """`voicebot yclients-emulator --port P`: serve a company seeded from the config."""
    from voicebot.config import load_config

    section = load_config(getattr(args, "config", None)).domain.get("booking") or {}
    catalog = Catalog.from_config(section)

    async def main() -> None:
        emu = YclientsEmulator.from_catalog(
            catalog,
            timezone=args.timezone,
            host=args.host,
            port=args.port,
            partner_token=args.partner_token,
            user_token=args.user_token,
            company_id=args.company_id,
        )
        if args.now:
            t0, shift = datetime.fromisoformat(args.now), datetime.now(UTC)
            emu.company.now = lambda: t0 + (datetime.now(UTC) - shift)
        await emu.start()
        print(
            f"YCLIENTS emulator (a TEST DOUBLE) at {emu.url}, company {emu.company_id}\n"
            f"  export YCLIENTS_PARTNER_TOKEN={emu.partner_token} "
            f"YCLIENTS_USER_TOKEN={emu.user_token}",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await emu.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["Call", "YclientsEmulator", "run_cli"]
