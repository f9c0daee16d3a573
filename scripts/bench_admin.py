"""Response time of the salon's page and calendar feed on a busy salon's data (loopback,
shared machine: indicative only).

Seeds a temporary SQLite store with 60 days × 3 masters × 12 bookings (2160) and 3000
call records, mounts the salon's routes on aiohttp's test server, and times 30 requests
of each page: the day view, today's calls, 90 days of numbers, and the calendar feed
(the first request builds it, the rest hit the unchanged-feed cache).

    .venv/bin/python scripts/bench_admin.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from booking.models import CallRecord, NewBooking
from tests.admin_fixtures import ADMIN, CAL, salon_app

REQUESTS = 30


async def main() -> None:
    """Seed, then print median / p99 / max per page in ms."""
    rnd = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        async with salon_app(Path(tmp)) as (client, provider):
            tz = provider.catalog.salon.tz
            day0 = datetime.now(tz).replace(hour=9, minute=0, second=0, microsecond=0)
            n = 0
            for d in range(-30, 30):
                for master in ("Иван", "Петр", "Сергей"):
                    for slot in range(12):
                        s = day0 + timedelta(days=d, minutes=60 * slot)
                        phone = f"+7916{n:07d}"
                        await provider.store.create(
                            NewBooking(
                                "haircut", master, s, s + timedelta(minutes=30), "Клиент", phone
                            )
                        )
                        n += 1
            for i in range(3000):
                t = datetime.now(tz) - timedelta(minutes=43 * i)
                turns = [{"expecting": "time", "resolved": True, "extracted": {"time": "15:00"}}]
                await provider.store.save_call(
                    CallRecord(
                        f"c{i}",
                        t,
                        t + timedelta(seconds=60),
                        rnd.choice(["booked", "no_booking", "transfer"]),
                        "caller_hangup",
                        [{"role": "caller", "text": "Хочу подстричься завтра в 15:00", "at_ms": 1}]
                        * 8,
                        {"turns": turns * 6},
                        "итог",
                        None,
                        {
                            "channel": "voximplant",
                            "turn_latency_ms": [rnd.uniform(600, 1500) for _ in range(6)],
                        },
                    )
                )
            print(f"seeded {n} bookings and 3000 call records")
            bearer = {"Authorization": f"Bearer {ADMIN}"}
            pages = (
                ("day view", f"/admin?date={day0.date()}", bearer),
                ("calls (today)", "/admin/calls", bearer),
                ("numbers, 90 days", "/admin/numbers?days=90", bearer),
                (f"calendar.ics ({n} events)", f"/calendar.ics?token={CAL}", {}),
            )
            for name, url, headers in pages:
                ms = []
                for _ in range(REQUESTS):
                    t0 = time.perf_counter()
                    r = await client.get(url, headers=headers)
                    await r.read()
                    ms.append((time.perf_counter() - t0) * 1000)
                    assert r.status == 200, (url, r.status)
                # 30 samples: the p99 is the slowest (for the feed, the first build).
                print(f"{name:30s} median {statistics.median(ms):7.1f} ms  p99 {max(ms):7.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
