"""Free times from `book_times`, cached a few seconds per master, day and service, and
the choice of alternatives from them.

The cache spares the API (5 requests/s) the repeated lookups of one dialogue turn
(check, then the read-back's book_check, then nearest); it is short because walk-ins
and the salon's own bookings change YCLIENTS behind the bot's back. A booking or
cancellation made through the bot invalidates its master's day at once. Concurrent
lookups of one key share one request.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from booking.availability import Option, unique_times
from booking.yclients import wire
from voicebot.clock import Clock

Key = tuple[int, date, int]


class FreeTimes:
    """`book_times` with a per-(staff, day, service) TTL cache."""

    def __init__(self, client: Any, clock: Clock, *, ttl_s: float = 5.0) -> None:
        self.client = client
        self.clock = clock
        self.ttl_s = ttl_s
        self._cache: dict[Key, tuple[float, list[wire.FreeTime]]] = {}
        self._inflight: dict[Key, asyncio.Future[list[wire.FreeTime]]] = {}
        self.fetches = 0

    async def get(self, staff: int, day: date, service: int) -> list[wire.FreeTime]:
        """Free times (cached for `ttl_s` seconds)."""
        key = (staff, day, service)
        hit = self._cache.get(key)
        if hit is not None and self.clock.monotonic() < hit[0]:
            return hit[1]
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        fut: asyncio.Future[list[wire.FreeTime]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            self.fetches += 1
            times = await self.client.book_times(staff, day, service)
            self._cache[key] = (self.clock.monotonic() + self.ttl_s, times)
            fut.set_result(times)
            return times
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._inflight[key]

    def invalidate(self, staff: int, day: date) -> None:
        """Forget a master's day, and the merged any-master list (staff 0) of that day
        (after the bot booked or cancelled there)."""
        for key in [k for k in self._cache if k[0] in (staff, 0) and k[1] == day]:
            del self._cache[key]


def nearest_options(
    same_day_any: list[Option],
    same_day: list[Option],
    later: list[Option],
    wanted: datetime,
    master: str | None,
    limit: int = 3,
) -> list[Option]:
    """Up to `limit` alternatives: the wanted time with another master, the closest free
    times that day on either side, then the closest time on the next free day."""
    out: list[Option] = []
    other = [o for o in same_day_any if o.start == wanted and o.master != master]
    if other:
        out.append(other[0])
    day = unique_times(same_day)
    before = [o for o in day if o.start < wanted]
    after = [o for o in day if o.start > wanted]
    picks = ([before[-1]] if before else []) + ([after[0]] if after else [])
    picks.sort(key=lambda o: abs((o.start - wanted).total_seconds()))
    out.extend(picks)
    if len(out) < limit and later:
        wanted_t = wanted.timetz().replace(tzinfo=None)
        target_day = later[0].start.date()
        target = datetime.combine(target_day, wanted_t, tzinfo=later[0].start.tzinfo)
        out.append(min(unique_times(later), key=lambda o: abs((o.start - target).total_seconds())))
    deduped: list[Option] = []
    for o in out:
        if all(o.start != d.start or o.master != d.master for d in deduped):
            deduped.append(o)
    return deduped[:limit]
