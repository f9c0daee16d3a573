"""A booking provider on a temporary SQLite store with the salon's routes mounted,
served by aiohttp's test server (no engine, no Chromium)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from booking.bot import BookingProvider, build_provider
from booking.models import CallRecord, NewBooking
from booking.web import mount
from voicebot.config import load_config

ADMIN = "admin-secret-token"
CAL = "calendar-secret-token"
PHONE = "+79161234567"


@asynccontextmanager
async def salon_app(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    booking_overrides: dict[str, Any] | None = None,
    clock: Any = None,
) -> AsyncIterator[tuple[TestClient[Any, Any], BookingProvider]]:
    """A started provider and a test client of an app with only the salon's routes."""
    domain = load_config().domain
    domain = {**domain, "booking": {**domain["booking"], **(booking_overrides or {})}}
    options: dict[str, Any] = {"store": f"sqlite:///{tmp_path}/s.sqlite3"}
    if clock is not None:
        options["clock"] = clock
    provider = build_provider(domain, options)
    await provider.start()
    app = web.Application()
    mount(
        app,
        provider,
        env if env is not None else {"VOICEBOT_ADMIN_TOKEN": ADMIN, "VOICEBOT_CALENDAR_TOKEN": CAL},
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, provider
    finally:
        await client.close()
        await provider.aclose()


def tomorrow_at(provider: BookingProvider, hour: int) -> datetime:
    """Tomorrow at `hour`:00 in the salon's zone."""
    tz = provider.catalog.salon.tz
    day = datetime.now(tz).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz)


async def seed(provider: BookingProvider, hour: int = 15, master: str = "Иван") -> Any:
    """One 30-minute haircut tomorrow, plus its call record."""
    start = tomorrow_at(provider, hour)
    b = await provider.store.create(
        NewBooking("haircut", master, start, start + timedelta(minutes=30), "Анна", PHONE, "c1")
    )
    await provider.store.save_call(
        CallRecord(
            call_id="c1",
            started_at=datetime.now(provider.catalog.salon.tz) - timedelta(minutes=5),
            ended_at=datetime.now(provider.catalog.salon.tz) - timedelta(minutes=4),
            outcome="booked",
            reason="bot_hangup:booked",
            transcript=[
                {"role": "bot", "text": "Здравствуйте!", "at_ms": 0},
                {"role": "caller", "text": "Стрижка завтра, Анна, 8 916 123-45-67", "at_ms": 900},
            ],
            extracted={"turns": [{"expecting": "service", "resolved": True, "extracted": {}}]},
            summary="Анна записалась на стрижку",
            booking_id=b.id,
            stats={"channel": "browser", "turn_latency_ms": [420.0, 610.5]},
        )
    )
    return b
