"""Booking outcomes as a Prometheus counter (`voicebot_bookings_total{outcome}`).

Defined here, not in the engine: the engine knows nothing about salons. The counter
joins the process's default registry (or the shared multi-worker directory that
`voicebot serve --workers N` sets up), so the server's `/metrics` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from prometheus_client import Counter

from voicebot.clock import Clock
from voicebot.ops import metrics

log = logging.getLogger(__name__)

OUTBOX_POLL_S = 10.0

BOOKINGS = Counter(
    "voicebot_bookings_total",
    "Booking attempts by outcome: created, conflict (the slot was taken meanwhile), "
    "failed (the store or backend failed; the caller was handed over).",
    ["outcome"],
)


def booking_outcome(outcome: Literal["created", "conflict", "failed"]) -> None:
    """Count one booking attempt's outcome."""
    BOOKINGS.labels(outcome).inc()


class OutboxDepth:
    """`voicebot_outbox_queue_depth`: the outbox's pending rows as the database sees
    them (every process's), read by a background task every OUTBOX_POLL_S (a scrape
    must not wait for a query). `read()` returns an object with `pending`."""

    def __init__(self, read: Callable[[], Awaitable[Any]], clock: Clock) -> None:
        self.read = read
        self.clock = clock
        self.pending: int | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def started(cls, read: Callable[[], Awaitable[Any]], clock: Clock) -> OutboxDepth:
        """A poller already registered and running."""
        depth = cls(read, clock)
        depth.start()
        return depth

    def start(self) -> None:
        """Register the gauge and start polling."""
        metrics.register_outbox(lambda: self.pending)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-depth")

    async def _run(self) -> None:
        while True:
            try:
                self.pending = int((await self.read()).pending)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next poll tries again
                log.debug("outbox depth: %r", exc)
            await self.clock.sleep(OUTBOX_POLL_S)

    async def stop(self) -> None:
        """Stop polling and remove the gauge."""
        metrics.unregister_gauge_callback(metrics.OUTBOX_DEPTH_METRIC)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @staticmethod
    async def stop_if(depth: OutboxDepth | None) -> None:
        """`stop()` when there is a poller."""
        if depth is not None:
            await depth.stop()
