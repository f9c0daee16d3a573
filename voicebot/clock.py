"""Injectable time.

Everything that waits or timestamps in the engine asks a `Clock`, never `time` or
`asyncio.sleep` directly, so tests can drive turn-taking, timeouts and stream rotation
with a `VirtualClock` exactly and fast.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where time comes from: monotonic seconds, wall-clock now, and a sleep that tests can
    drive."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale; only differences are meaningful."""
        ...

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock (virtual clocks wake when time is advanced past it)."""
        ...


class RealClock:
    """The system clock.

    `start` shifts `now()` to a fixed wall time (simulate's `now:`); `speed` > 1 runs
    time faster than real (simulate's `--speed`): sleeps shrink and elapsed time grows
    by the same factor, so every timer in the engine stays consistent.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._t0 = time.monotonic()
        self._start = start
        self.speed = speed
        if speed == 1.0:
            # The engine asks several times per 20 ms frame of every call: the C function
            # itself, not a method around it.
            self.monotonic = time.monotonic  # type: ignore[method-assign]

    def monotonic(self) -> float:
        """`time.monotonic()` (seconds); with a speed factor, scaled from the start."""
        if self.speed == 1.0:
            return time.monotonic()
        return self._t0 + (time.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        """The wall-clock time (timezone-aware), from `start` when one was given, at
        `speed`."""
        if self._start is None:
            return datetime.now(UTC).astimezone()
        return self._start + timedelta(seconds=self.monotonic() - self._t0)

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep` for `seconds / speed` of real time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class VirtualClock:
    """Time that moves only when a test says so.

    `sleep()` parks the caller until `advance()` moves time past its deadline; sleepers
    wake in deadline order, each getting a loop turn so the work it triggers runs
    before later deadlines fire.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._t = 0.0
        self._start = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def monotonic(self) -> float:
        """Virtual seconds since the clock was made (moves only on `advance`)."""
        return self._t

    def now(self) -> datetime:
        """The start time plus the virtual seconds elapsed (timezone-aware)."""
        return self._start + timedelta(seconds=self._t)

    async def sleep(self, seconds: float) -> None:
        """Park the caller until `advance` moves time past `seconds` from now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self._t + seconds, next(self._ids), fut))
        await fut

    @property
    def pending(self) -> int:
        """Sleepers still waiting for their deadline."""
        return sum(1 for _, _, f in self._heap if not f.done())

    async def advance(self, seconds: float, *, step: float | None = None) -> None:
        """Move time forward by `seconds`, waking every sleeper whose deadline passes.

        With `step`, time moves in increments of at most `step`, letting periodic work
        (keep-alives, pacing) interleave realistically.
        """
        target = self._t + seconds
        while True:
            await _settle()
            nxt = self._heap[0][0] if self._heap else None
            limit = target if step is None else min(target, self._t + step)
            if nxt is not None and nxt <= limit:
                deadline, _, fut = heapq.heappop(self._heap)
                self._t = max(self._t, deadline)
                if not fut.done():
                    fut.set_result(None)
                continue
            if self._t >= target:
                break
            self._t = limit
        await _settle()


async def _settle(turns: int = 5) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)
