"""The notification outbox in both stores: rows commit with the booking or not at all,
enqueue is idempotent by key, and the claim/lease protocol hands each row to exactly one
sender, also with several senders (separate connections, as separate processes) at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from booking.models import NewBooking, SlotTaken
from booking.notify.message import Notification
from booking.store.base import BookingStore, open_store

TZ = ZoneInfo("Europe/Moscow")
PG_URL = os.environ.get("VOICEBOT_TEST_PG_URL")
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=TZ)


def nb(start: datetime = T0, call_id: str | None = None) -> NewBooking:
    return NewBooking(
        service="haircut",
        master="Иван",
        start=start,
        end=start + timedelta(minutes=30),
        name="Анна",
        phone="+79161234567",
        call_id=call_id,
    )


def notes(kind: str = "booked") -> list[Notification]:
    data = {"service_name": "Стрижка", "master": "Иван"}
    return [
        Notification(kind, "telegram", data),  # type: ignore[arg-type]
        Notification(kind, "sms", data, recipient="+79161234567"),  # type: ignore[arg-type]
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    if not PG_URL:
        pytest.skip("VOICEBOT_TEST_PG_URL not set")
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bookings, calls, outbox")
    return PG_URL


@pytest.fixture
async def store(url: str) -> AsyncIterator[BookingStore]:
    s = open_store(url)
    await s.open()
    yield s
    await s.close()


def now() -> datetime:
    return datetime.now(UTC)


async def test_rows_commit_with_the_booking_and_not_without(store: BookingStore) -> None:
    b = await store.create(nb(call_id="c1"), notify=notes())
    rows = await store.outbox.list()
    assert sorted((r.channel, r.booking_id, r.status) for r in rows) == [
        ("sms", b.id, "pending"),
        ("telegram", b.id, "pending"),
    ]
    assert all(r.data["id"] == b.id for r in rows)
    # The same call again returns the same booking and adds no rows.
    again = await store.create(nb(call_id="c1"), notify=notes())
    assert again.id == b.id and len(await store.outbox.list()) == 2
    # A refused booking leaves no notification behind.
    with pytest.raises(SlotTaken):
        await store.create(nb(call_id="c2"), notify=notes())
    assert len(await store.outbox.list()) == 2
    cancelled = await store.cancel(b.id, notify=notes("cancelled"))
    assert cancelled is not None
    kinds = sorted(r.kind for r in await store.outbox.list())
    assert kinds == ["booked", "booked", "cancelled", "cancelled"]
    assert await store.cancel(b.id, notify=notes("cancelled")) is None
    assert len(await store.outbox.list()) == 4


async def test_enqueue_is_idempotent_by_key(store: BookingStore) -> None:
    n = Notification("handoff", "telegram", {"phone": "+79161234567"}, key="handoff:call-1")
    assert await store.outbox.enqueue([n], None, now()) == 1
    assert await store.outbox.enqueue([n], None, now()) == 0
    assert len(await store.outbox.list()) == 1


async def test_lease_expiry_hands_the_row_over_and_fences_the_old_owner(
    store: BookingStore,
) -> None:
    await store.outbox.enqueue(notes(), "B1", now())
    t = now()
    a = await store.outbox.claim("a", now=t, lease_s=30)
    assert len(a) == 2 and all(r.attempts == 1 for r in a)
    assert await store.outbox.claim("b", now=t, lease_s=30) == []
    # "a" died; after the lease, "b" takes the rows over.
    later = t + timedelta(seconds=31)
    b = await store.outbox.claim("b", now=later, lease_s=30)
    assert [r.id for r in b] == [r.id for r in a] and all(r.attempts == 2 for r in b)
    assert not await store.outbox.mark_sent(a[0].id, "a", later)
    assert await store.outbox.mark_sent(b[0].id, "b", later)
    assert await store.outbox.mark_retry(b[1].id, "b", at=later + timedelta(seconds=5), error="x")
    assert await store.outbox.claim("c", now=later + timedelta(seconds=100), lease_s=30) != []
    st = await store.outbox.stats(later)
    assert (st.sent, st.pending) == (1, 1)
    # A sent row is never claimed again.
    assert all(
        r.id != b[0].id
        for r in await store.outbox.claim("d", now=later + timedelta(days=1), lease_s=1)
    )


async def test_concurrent_senders_each_row_exactly_once(url: str) -> None:
    first = open_store(url)
    await first.open()
    for i in range(30):
        n = Notification("handoff", "webhook", {"i": i}, key=f"k{i}")
        await first.outbox.enqueue([n], None, now())
    senders = [open_store(url) for _ in range(4)]
    for s in senders:
        await s.open()
    got: dict[int, str] = {}

    async def worker(s: BookingStore, name: str) -> None:
        while True:
            rows = await s.outbox.claim(name, now=now(), lease_s=60, limit=3)
            if not rows:
                return
            for r in rows:
                assert r.id not in got, f"row {r.id} claimed twice"
                got[r.id] = name
                assert await s.outbox.mark_sent(r.id, name, now())
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(worker(s, f"w{i}") for i, s in enumerate(senders)))
        assert len(got) == 30
        assert (await first.outbox.stats(now())).sent == 30
    finally:
        for s in [first, *senders]:
            await s.close()
