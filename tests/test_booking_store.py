"""Both store backends through the same tests: no double booking (also under concurrent
processes and tasks), idempotency per call, durability, cancel, lookups, call records."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from booking.models import CallRecord, NewBooking, SlotTaken
from booking.store.base import BookingStore, open_store

TZ = ZoneInfo("Europe/Moscow")
PG_URL = os.environ.get("VOICEBOT_TEST_PG_URL")
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=TZ)


def nb(
    master: str = "Иван",
    start: datetime = T0,
    minutes: int = 30,
    call_id: str | None = None,
    phone: str = "+79161234567",
) -> NewBooking:
    return NewBooking(
        service="haircut",
        master=master,
        start=start,
        end=start + timedelta(minutes=minutes),
        name="Анна",
        phone=phone,
        call_id=call_id,
    )


async def _reset_pg(url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bookings, calls, outbox")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/store.sqlite3"
    if not PG_URL:
        pytest.skip("VOICEBOT_TEST_PG_URL not set")
    await _reset_pg(PG_URL)
    return PG_URL


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[BookingStore]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


async def test_overlap_is_refused_adjacent_is_fine(store: BookingStore) -> None:
    first = await store.create(nb())
    with pytest.raises(SlotTaken):
        await store.create(nb(start=T0 + timedelta(minutes=15)))
    with pytest.raises(SlotTaken):
        await store.create(nb(start=T0 - timedelta(minutes=15)))
    # Back to back with the same master, and the same time with another master.
    await store.create(nb(start=T0 + timedelta(minutes=30)))
    await store.create(nb(start=T0 - timedelta(minutes=30)))
    await store.create(nb(master="Петр"))
    assert len(await store.list_all()) == 4
    assert first.id.isalnum() and len(first.id) == 6
    assert first.start == T0 and first.start.utcoffset() == timedelta(hours=3)


async def test_idempotent_per_call(store: BookingStore) -> None:
    a = await store.create(nb(call_id="call-1"))
    b = await store.create(nb(call_id="call-1", start=T0 + timedelta(hours=2)))
    assert b.id == a.id and b.start == a.start
    assert len(await store.list_all()) == 1


async def test_cancel_frees_the_slot_and_find_by_phone(store: BookingStore) -> None:
    a = await store.create(nb(phone="+79160000000"))
    await store.create(nb(master="Петр", phone="+79169999999"))
    found = await store.find_by_phone("+79160000000", after=T0 - timedelta(days=1))
    assert [b.id for b in found] == [a.id]
    assert await store.find_by_phone("+79160000000", after=T0 + timedelta(days=1)) == []
    cancelled = await store.cancel(a.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await store.cancel(a.id) is None
    assert await store.find_by_phone("+79160000000") == []
    again = await store.create(nb())  # the freed slot can be booked again
    assert again.id != a.id
    assert {b.status for b in await store.list_all(include_cancelled=True)} == {
        "active",
        "cancelled",
    }


async def test_list_between(store: BookingStore) -> None:
    await store.create(nb())
    await store.create(nb(start=T0 + timedelta(days=1)))
    day = await store.list_between(T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
    assert len(day) == 1
    assert await store.list_between(T0, T0 + timedelta(hours=1), master="Петр") == []


async def test_durable_across_connections(store_url: str) -> None:
    s1 = open_store(store_url)
    await s1.open()
    made = await s1.create(nb(call_id="c-durable"))
    s2 = open_store(store_url)  # a fresh connection sees it immediately
    await s2.open()
    try:
        got = await s2.get(made.id)
        assert got is not None and got.start == T0 and got.phone == "+79161234567"
    finally:
        await s1.close()
        await s2.close()


async def test_call_record_round_trip(store: BookingStore) -> None:
    rec = CallRecord(
        call_id="c1",
        started_at=T0,
        ended_at=T0 + timedelta(minutes=2),
        outcome="booked",
        reason="hangup",
        transcript=[{"role": "caller", "text": "Да", "at_ms": 10}],
        extracted={"slots": {"name": "Анна"}},
        summary="Анна записана",
        booking_id="ABC234",
        stats={"llm_share": 0.0},
    )
    await store.save_call(rec)
    rec.summary = "updated"
    await store.save_call(rec)
    got = await store.get_call("c1")
    assert got is not None
    assert got.summary == "updated" and got.transcript == rec.transcript
    assert got.extracted == rec.extracted and got.booking_id == "ABC234"


async def test_concurrent_tasks_book_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    for s in stores:
        await s.open()
    try:

        async def attempt(i: int) -> bool:
            try:
                await stores[i % len(stores)].create(nb(call_id=f"task-{i}"))
                return True
            except SlotTaken:
                return False

        results = await asyncio.gather(*(attempt(i) for i in range(24)))
        assert sum(results) == 1
        assert len(await stores[0].list_all()) == 1
    finally:
        for s in stores:
            await s.close()


def _process_attempt(url: str, i: int, start_evt: mp.synchronize.Event, out: mp.Queue) -> None:
    async def go() -> str:
        s = open_store(url)
        await s.open()
        try:
            start_evt.wait(30)
            await s.create(nb(call_id=f"proc-{i}-{uuid.uuid4().hex[:6]}"))
            return "ok"
        except SlotTaken:
            return "taken"
        finally:
            await s.close()

    try:
        out.put(asyncio.run(go()))
    except Exception as e:  # report, do not hang the parent
        out.put(f"error: {e!r}")


async def test_concurrent_processes_book_once(store_url: str) -> None:
    # Create the schema once so processes race only on the booking itself.
    s = open_store(store_url)
    await s.open()
    await s.close()
    ctx = mp.get_context("spawn" if store_url.startswith("postgres") else "fork")
    start_evt = ctx.Event()
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_process_attempt, args=(store_url, i, start_evt, out)) for i in range(20)
    ]
    for p in procs:
        p.start()
    await asyncio.sleep(0.5)
    start_evt.set()
    results = [await asyncio.to_thread(out.get, True, 60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results.count("ok") == 1, results
    assert results.count("taken") == 19, results
    s = open_store(store_url)
    await s.open()
    try:
        assert len(await s.list_all()) == 1
    finally:
        await s.close()


def test_open_store_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError):
        open_store("mysql://x")


async def test_change_counter_cancelled_listing_calls_and_privacy(store: BookingStore) -> None:
    """seq bumps on cancel; include_cancelled; list_calls window; forget and purge."""
    from booking.notify.message import Notification

    sms = Notification("booked", "sms", {"name": "Анна"}, recipient="+79161234567")
    b = await store.create(nb(call_id="c-1"), notify=[sms])
    assert b.seq == 0
    done = await store.cancel(b.id)
    assert done is not None and done.seq == 1 and (await store.get(b.id)).seq == 1
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert await store.list_between(*window) == []
    (c,) = await store.list_between(*window, include_cancelled=True)
    assert c.status == "cancelled" and c.seq == 1
    other = await store.create(nb(master="Петр", phone="+79160000000"))
    for cid, age_days, text in (
        ("c-1", 1, "8 916 123-45-67"),
        ("c-2", 2, "другой"),
        ("c-old", 200, "старый"),
    ):
        t = T0 - timedelta(days=age_days)
        await store.save_call(
            CallRecord(
                cid,
                t,
                t,
                "booked",
                "r",
                [{"role": "caller", "text": text, "at_ms": 0}],
                {},
                "",
                None,
                {"channel": "browser"},
            )
        )
    calls = await store.list_calls(T0 - timedelta(days=3), T0)
    assert [r.call_id for r in calls] == ["c-1", "c-2"] and calls[0].stats["channel"] == "browser"
    brief = await store.list_calls(T0 - timedelta(days=3), T0, brief=True)
    assert [(r.call_id, r.transcript, r.stats["channel"]) for r in brief] == [
        ("c-1", [], "browser"),
        ("c-2", [], "browser"),
    ]
    report = await store.forget_phone("+79161234567")
    assert report.bookings_anonymized == (b.id,) and report.calls_deleted == ("c-1",)
    assert len(report.notifications_deleted) == 1
    gone = await store.get(b.id)
    assert (gone.name, gone.phone, gone.seq) == ("", "", 2)
    assert (await store.get(other.id)).phone == "+79160000000"
    purged = await store.purge(
        calls_before=T0 - timedelta(days=90), visits_before=T0 - timedelta(days=400)
    )
    assert purged.calls_deleted == ("c-old",) and purged.bookings_anonymized == ()
    assert await store.get_call("c-2") is not None


async def test_sqlite_file_of_the_first_release_gains_the_new_columns(tmp_path: Path) -> None:
    """A database written before `seq` and `calls.started_ts` existed opens and works."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE bookings (id TEXT PRIMARY KEY, call_id TEXT, service TEXT NOT NULL,
        master TEXT NOT NULL, start_at TEXT NOT NULL, end_at TEXT NOT NULL,
        start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL, name TEXT NOT NULL,
        phone TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL);
        CREATE TABLE calls (call_id TEXT PRIMARY KEY, started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL,
        transcript TEXT NOT NULL, extracted TEXT NOT NULL, summary TEXT NOT NULL,
        booking_id TEXT, stats TEXT NOT NULL DEFAULT '{}');
        INSERT INTO calls VALUES ('old', '2026-11-23T10:00:00+03:00', '2026-11-23T10:01:00+03:00',
        'booked', 'r', '[]', '{}', '', NULL, '{}');"""
    )
    conn.close()
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        b = await store.create(nb())
        assert (await store.cancel(b.id)).seq == 1
        calls = await store.list_calls(T0 - timedelta(days=2), T0)
        assert [c.call_id for c in calls] == ["old"]
    finally:
        await store.close()
