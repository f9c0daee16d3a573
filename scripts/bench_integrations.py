"""Latency of the booking integrations on loopback (shared machine: indicative only).

- YCLIENTS backend against the local emulator (a test double): `check` (book_times +
  book_check) with a cold and a warm free-times cache, and `create` (book_record);
  the emulator's 5 requests/s limit is lifted here to see the intrinsic cost — with it,
  a burst above 5 requests waits up to a second, which is the point of the cache.
- The outbox: from the booking's commit (local SQLite store, rows in the same
  transaction) to the Telegram fake receiving sendMessage, through the real sender.

Usage: PYTHONPATH=. .venv/bin/python scripts/bench_integrations.py [--n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import datetime, timedelta

from booking.backends.local import LocalBackend
from booking.models import NewBooking
from booking.notify.factory import build_sender
from booking.notify.notifier import Notifier
from booking.notify.settings import NotifySettings
from booking.store.base import open_store
from booking.yclients.backend import YclientsBackend
from tests.fake_notify import FakeTelegram
from tests.yclients_fixtures import config_catalog, settings_for, start_emulator

NOW = datetime.fromisoformat("2026-11-23T10:00:00+03:00")


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"{name:<44} n={len(ms):<4} median {statistics.median(ms):7.2f} ms  p99 {p99:7.2f} ms"


async def yclients(n: int, tmp: str) -> None:
    cat = config_catalog()
    emu = await start_emulator(cat, NOW, rate_limit=100_000)
    store = open_store(f"sqlite:///{tmp}/y.sqlite3")
    await store.open()
    b = YclientsBackend(settings_for(emu, rate_per_s=100_000), cat, store)
    await b.open()
    cold, warm, create = [], [], []
    day = datetime(2026, 11, 24, 9, 0, tzinfo=cat.salon.tz)
    for i in range(n):
        start = day + timedelta(days=i // 40, minutes=15 * (i % 40))
        assert b.times is not None
        b.times.invalidate(101, start.date())
        t = time.perf_counter()
        await b.check("haircut", start, NOW, "Иван")
        cold.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await b.check("haircut", start, NOW, "Иван")
        warm.append((time.perf_counter() - t) * 1000)
    for i in range(n):
        start = day + timedelta(days=i // 24, minutes=30 * (i % 24))
        nb = NewBooking(
            "haircut", "Петр", start, start + timedelta(minutes=30), "Анна", "+79161234567", f"c{i}"
        )
        t = time.perf_counter()
        await b.create(nb)
        create.append((time.perf_counter() - t) * 1000)
    print(summary("YCLIENTS check, cold cache (times + check)", cold))
    print(summary("YCLIENTS check, warm cache (book_check only)", warm))
    print(summary("YCLIENTS create (book_record)", create))
    await b.close()
    await store.close()
    await emu.stop()


async def outbox(n: int, tmp: str) -> None:
    tg = FakeTelegram("1:bench", "7")
    await tg.start()
    store = open_store(f"sqlite:///{tmp}/o.sqlite3")
    await store.open()
    cat = config_catalog()
    env = {"VOICEBOT_TELEGRAM_BOT_TOKEN": "1:bench", "VOICEBOT_TELEGRAM_CHAT_ID": "7"}
    settings = NotifySettings.from_config({"telegram": {"api_url": tg.url}}, env)
    notifier = Notifier(settings, lambda: cat)
    sender = build_sender(settings, store.outbox, notifier)
    sender.start()
    backend = LocalBackend(cat, store)
    lat = []
    day = datetime(2026, 11, 24, 9, 0, tzinfo=cat.salon.tz)
    for i in range(n):
        start = day + timedelta(days=i // 24, minutes=30 * (i % 24))
        nb = NewBooking(
            "haircut", "Иван", start, start + timedelta(minutes=30), "Анна", "+79161234567", f"o{i}"
        )
        await backend.create(nb, notify=notifier.rows("booked", nb))
        t = time.perf_counter()
        sender.kick()
        while len(tg.sent) <= i:
            tg.arrived.clear()
            await tg.arrived.wait()
        lat.append((time.perf_counter() - t) * 1000)
    print(summary("outbox: commit → Telegram sendMessage received", lat))
    await sender.stop()
    await store.close()
    await tg.stop()


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await yclients(n, tmp)
        await outbox(n, tmp)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100)
    asyncio.run(main(p.parse_args().n))
