"""The retention purge: what `voicebot privacy purge` runs, and `serve` runs daily."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from booking.privacy import PrivacySettings
from booking.privacy.act import PurgeReport
from booking.store.base import BookingStore
from voicebot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from booking.bot import BookingProvider

log = logging.getLogger(__name__)


async def purge(store: BookingStore, settings: PrivacySettings, now: datetime) -> PurgeReport:
    """Apply both retention terms as of `now`."""
    return await store.purge(
        calls_before=now - timedelta(days=settings.retention_days),
        visits_before=now - timedelta(days=settings.booking_retention_days),
    )


PURGES_KEY = web.AppKey("privacy_purges", list)


def add_daily_purge(app: web.Application, provider: BookingProvider) -> None:
    """Run the purge at start-up and every `privacy.purge_every_h` hours while serving,
    on the provider's clock. Several processes may run it at once: each pass is one
    store transaction, and a second pass finds nothing left to delete.
    `app[PURGES_KEY]` collects each pass's report (tests, diagnostics)."""
    app[PURGES_KEY] = []

    async def loop() -> None:
        every = provider.privacy.purge_every_h * 3600
        clock = provider.clock
        while True:
            try:
                report = await purge(provider.store, provider.privacy, clock.now())
                app[PURGES_KEY].append(report)
                if not report.empty:
                    log.info(
                        "retention purge: %d booking(s) anonymized, %d call record(s) deleted",
                        len(report.bookings_anonymized),
                        len(report.calls_deleted),
                    )
            except Exception:
                log.exception("retention purge failed; retrying at the next run")
            await clock.sleep(every)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(loop(), name="privacy-purge")
        yield
        await cancel_and_wait(task)

    app.cleanup_ctx.append(ctx)
