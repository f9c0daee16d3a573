"""The YCLIENTS/Altegio HTTP client: endpoints, the 5 requests/s limit, 429 backoff.

Thin: every request goes through `_call`, which waits for the rate limiter, sends the
two-token Authorization and versioned Accept header (`wire.headers`), and unwraps the
envelope (`wire.unwrap`). A 429 is retried after `Retry-After` (or an exponential
backoff); other errors surface as `wire.YclientsError` or `httpx.TransportError`.
Every wait goes through the injected clock.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import httpx

from booking.yclients import wire
from booking.yclients.settings import YclientsSettings
from voicebot.clock import Clock

log = logging.getLogger(__name__)


class RateLimiter:
    """At most `rate` requests in any rolling window of 1 s plus a margin (YCLIENTS:
    5/s per IP). The margin absorbs network jitter: requests sent exactly 1 s apart
    may arrive closer together and be counted in one server-side second."""

    def __init__(self, clock: Clock, rate: float = 5.0, margin_s: float = 0.1) -> None:
        self.clock = clock
        self.rate = max(1, int(rate))
        self.window_s = 1.0 + margin_s
        self._sent: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more request fits in the window, then count it."""
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                while self._sent and now - self._sent[0] >= self.window_s:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    self._sent.append(now)
                    return
                await self.clock.sleep(self.window_s - (now - self._sent[0]))


class YclientsClient:
    """One company's API, with the salon's partner and user tokens."""

    def __init__(
        self,
        settings: YclientsSettings,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.s = settings
        self.cid = settings.company_id
        self.clock = clock
        self.limiter = RateLimiter(clock, settings.rate_per_s)
        self._http = http or httpx.AsyncClient(timeout=settings.timeout_s)
        self._headers = wire.headers(settings.flavor, settings.partner_token, settings.user_token)
        self.requests = 0
        self.throttled = 0

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, Any]] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        url = f"{self.s.url}{path}"
        backoff = 0.5
        for attempt in range(self.s.max_retries + 1):
            await self.limiter.acquire()
            self.requests += 1
            resp = await self._http.request(
                method, url, params=list(params or ()), json=body, headers=self._headers
            )
            try:
                payload = resp.json() if resp.content else None
            except ValueError:
                payload = None
            if resp.status_code == 429 and attempt < self.s.max_retries:
                self.throttled += 1
                wait = _retry_after(resp.headers.get("Retry-After"), backoff)
                log.warning("YCLIENTS rate limit (429): waiting %.2f s", wait)
                await self.clock.sleep(wait)
                backoff = min(backoff * 2, 8.0)
                continue
            return wire.unwrap(resp.status_code, payload)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- catalog

    async def book_services(self, staff_id: int | None = None) -> list[dict[str, Any]]:
        """`GET /book_services/{cid}`: services (`seance_length` only with a staff filter)."""
        params = [("staff_id", staff_id)] if staff_id else []
        data = await self._call("GET", f"/book_services/{self.cid}", params=params)
        return list((data or {}).get("services") or [])

    async def book_staff(self, service_ids: Sequence[int] = ()) -> list[dict[str, Any]]:
        """`GET /book_staff/{cid}`: staff bookable online."""
        params = [("service_ids[]", i) for i in service_ids]
        return list(await self._call("GET", f"/book_staff/{self.cid}", params=params) or [])

    # ---------------------------------------------------------------- availability

    async def book_dates(self, service_id: int, staff_id: int | None = None) -> list[date]:
        """`GET /book_dates/{cid}`: dates with free time for the service (and master)."""
        params: list[tuple[str, Any]] = [("service_ids[]", service_id)]
        if staff_id:
            params.append(("staff_id", staff_id))
        return wire.parse_dates(await self._call("GET", f"/book_dates/{self.cid}", params=params))

    async def book_times(self, staff_id: int, day: date, service_id: int) -> list[wire.FreeTime]:
        """`GET /book_times/{cid}/{staff_id}/{date}`: free start times with datetimes."""
        data = await self._call(
            "GET",
            f"/book_times/{self.cid}/{staff_id}/{day.isoformat()}",
            params=[("service_ids[]", service_id)],
        )
        return wire.parse_times(data)

    async def book_check(self, appointments: Sequence[Mapping[str, Any]]) -> None:
        """`POST /book_check/{cid}`: raises YclientsError (433/436...) when not bookable."""
        await self._call(
            "POST", f"/book_check/{self.cid}", body={"appointments": list(appointments)}
        )

    # ---------------------------------------------------------------- records

    async def book_record(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`POST /book_record/{cid}` → [{id, record_id, record_hash}]."""
        return list(await self._call("POST", f"/book_record/{self.cid}", body=body) or [])

    async def records(
        self, start: date, end: date, *, staff_id: int | None = None, with_deleted: bool = False
    ) -> list[wire.Record]:
        """`GET /records/{cid}` (user token) for [start, end], all pages; deleted
        (cancelled) records only with `with_deleted`."""
        out: list[wire.Record] = []
        for page in range(1, 51):
            params: list[tuple[str, Any]] = [
                ("start_date", start.isoformat()),
                ("end_date", end.isoformat()),
                ("page", page),
                ("count", 200),
            ]
            if staff_id:
                params.append(("staff_id", staff_id))
            if with_deleted:
                params.append(("with_deleted", 1))
            batch = wire.parse_records(
                await self._call("GET", f"/records/{self.cid}", params=params)
            )
            out.extend(batch)
            if len(batch) < 200:
                break
        return out

    async def record(self, record_id: int) -> wire.Record:
        """`GET /record/{cid}/{record_id}` (user token)."""
        return wire.parse_record(await self._call("GET", f"/record/{self.cid}/{record_id}"))

    async def delete_record(self, record_id: int) -> None:
        """`DELETE /record/{cid}/{record_id}` (user token): cancels the visit."""
        await self._call("DELETE", f"/record/{self.cid}/{record_id}")

    async def bookform(self, form_id: int) -> dict[str, Any]:
        """`GET /bookform/{form_id}`: the online form's settings."""
        return dict(await self._call("GET", f"/bookform/{form_id}") or {})


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
