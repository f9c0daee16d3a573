"""The outbox sender: claims due rows, delivers them, records the outcome.

Run one per process (`voicebot serve` starts it; `voicebot notifications send` runs it
alone); any number may share one database (see `booking.notify.outbox`). Retries back
off exponentially (`backoff_s * 2^(attempts-1)`, capped), or wait what the provider
asked (Telegram `retry_after`); after `max_attempts` a row is `failed`. A channel that
reports `ChannelDown` (bad token, no money, SMSC blocked the IP) is stopped in this
process for `DOWN_RETRY_S` (then one row probes it again): its rows wait, an alert
goes to the other salon channels and the log. Every wait goes through the injected
clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from booking.notify.channels.base import Channel, ChannelDown, Rejected, RetryLater
from booking.notify.message import OutboxRow, OutboxStats
from booking.notify.notifier import Notifier
from booking.notify.outbox import Outbox
from booking.notify.settings import SenderSettings
from booking.notify.templates import Rendered, Templates
from voicebot.clock import Clock
from voicebot.ops import metrics
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DOWN_RETRY_S = 600.0


@dataclass(slots=True)
class SenderStats:
    """Counters of this process (since start) plus the queue as the database sees it."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    channels_down: dict[str, str] = field(default_factory=dict)
    queue: OutboxStats = field(default_factory=OutboxStats)


class OutboxSender:
    """Background delivery loop over one outbox."""

    def __init__(
        self,
        outbox: Outbox,
        channels: Mapping[str, Channel],
        templates: Templates,
        clock: Clock,
        settings: SenderSettings,
        *,
        notifier: Notifier | None = None,
        owner: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.channels = dict(channels)
        self.templates = templates
        self.clock = clock
        self.s = settings
        self.notifier = notifier
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.counters = SenderStats()
        self._down_until: dict[str, float] = {}  # channel → monotonic time to re-probe
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the loop in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    def kick(self) -> None:
        """New rows were enqueued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sender pass failed")
                n = 0
            if n == 0:
                await self._idle()

    async def _idle(self) -> None:
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(self.s.poll_s))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, waker):
                t.cancel()

    async def run_once(self, limit: int = 10) -> int:
        """One claim-and-deliver pass; how many rows it handled."""
        self._busy = True
        try:
            rows = await self.outbox.claim(
                self.owner, now=self.clock.now(), lease_s=self.s.lease_s, limit=limit
            )
            for row in rows:
                await self._deliver(row)
            return len(rows)
        finally:
            self._busy = False

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait (bounded) until no row is due: every row was sent, failed, or waits for
        a later retry (which stays in the outbox for the next run). True when drained."""
        deadline = self.clock.monotonic() + (
            self.s.drain_timeout_s if timeout_s is None else timeout_s
        )
        while True:
            st = await self.outbox.stats(self.clock.now())
            if st.due == 0 and not self._busy:
                if st.pending:
                    log.info("outbox: %d notification(s) wait for a later retry", st.pending)
                return True
            if self.clock.monotonic() >= deadline:
                log.warning("outbox: %d notification(s) still due at drain", st.due)
                return False
            self.kick()
            if self._task is None:
                await self.run_once()
            await self.clock.sleep(0.05)

    async def stop(self) -> None:
        """Stop the loop and close the channels."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for ch in self.channels.values():
            with contextlib.suppress(Exception):
                await ch.aclose()

    async def stats(self) -> SenderStats:
        """Counters plus queue depth (for metrics)."""
        self.counters.queue = await self.outbox.stats(self.clock.now())
        return self.counters

    # ------------------------------------------------------------------ delivery

    def _backoff(self, attempts: int) -> float:
        return min(self.s.max_backoff_s, self.s.backoff_s * 2 ** max(0, attempts - 1))

    async def _deliver(self, row: OutboxRow) -> None:
        now = self.clock.now()
        channel = self.channels.get(row.channel)
        if channel is None:
            await self.outbox.mark_failed(row.id, self.owner, error="channel off", status="skipped")
            self.counters.skipped += 1
            return
        if row.channel in self.counters.channels_down and (
            self.clock.monotonic() >= self._down_until.get(row.channel, 0.0)
        ):
            # Time to probe again (a topped-up balance, a fixed token, a lifted block).
            del self.counters.channels_down[row.channel]
        if row.channel in self.counters.channels_down:
            reason = self.counters.channels_down[row.channel]
            at = now + timedelta(seconds=DOWN_RETRY_S)
            await self.outbox.mark_retry(
                row.id, self.owner, at=at, error=f"channel stopped: {reason}"
            )
            return
        try:
            message = (
                self.templates.render(row.kind, row.channel, row.data)
                if self.templates.has(row.kind, row.channel)
                else Rendered("", "")
            )
            await channel.send(row, message)
        except RetryLater as e:
            wait = max(e.after_s or 0.0, self._backoff(row.attempts))
            if row.attempts >= self.s.max_attempts:
                await self._fail(row, str(e))
                return
            self.counters.retried += 1
            metrics.outbox_failure(row.channel, "retry")
            log.info("outbox %s/%s retry in %.0f s: %s", row.channel, row.id, wait, e)
            await self.outbox.mark_retry(
                row.id, self.owner, at=now + timedelta(seconds=wait), error=str(e)
            )
            return
        except Rejected as e:
            await self._fail(row, str(e))
            return
        except ChannelDown as e:
            await self._channel_down(row, str(e))
            return
        except (KeyError, ValueError) as e:  # a template/data problem: never deliverable
            await self._fail(row, f"template: {e!r}")
            return
        if await self.outbox.mark_sent(row.id, self.owner, self.clock.now()):
            self.counters.sent += 1
        else:
            log.warning("outbox row %s: lease lost before it was marked sent", row.id)

    async def _fail(self, row: OutboxRow, error: str) -> None:
        self.counters.failed += 1
        metrics.outbox_failure(row.channel, "failed")
        log.error("outbox %s/%s (%s) failed: %s", row.channel, row.id, row.kind, error)
        await self.outbox.mark_failed(row.id, self.owner, error=error)

    async def _channel_down(self, row: OutboxRow, reason: str) -> None:
        self.counters.channels_down[row.channel] = reason
        self._down_until[row.channel] = self.clock.monotonic() + DOWN_RETRY_S
        metrics.outbox_failure(row.channel, "channel_down")
        log.critical("notifications: channel %s stopped: %s", row.channel, reason)
        now = self.clock.now()
        await self.outbox.mark_retry(
            row.id, self.owner, at=now + timedelta(seconds=DOWN_RETRY_S), error=reason
        )
        if self.notifier is not None:
            rows = [
                r
                for r in self.notifier.alert_rows(
                    f"уведомления через {row.channel} остановлены: {reason}",
                    f"{row.channel}-down-{now:%Y%m%d}",
                )
                if r.channel != row.channel
            ]
            if rows:
                await self.outbox.enqueue(rows, None, now)
                self.kick()
