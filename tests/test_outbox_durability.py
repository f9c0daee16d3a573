"""Outbox durability across a killed sender process: the sender (`voicebot notifications
send`, a separate process) is SIGKILLed while its Telegram request is stalled in the
network; after a restart the row's lease runs out, it is delivered, and exactly one
message arrives. A row already marked sent is never sent again by a later process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from booking.notify.message import Notification
from booking.store.base import open_store
from tests.fake_notify import FakeTelegram

TOKEN, CHAT = "42:durability", "1001"
ROOT = Path(__file__).resolve().parent.parent


async def wait_for(cond, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def start_sender(config: Path, store_url: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN,
        "VOICEBOT_TELEGRAM_CHAT_ID": CHAT,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicebot.cli",
        "notifications",
        "send",
        "--config",
        str(config),
        "--store",
        store_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def write_config(path: Path, api_url: str) -> Path:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["notify"]["telegram"]["api_url"] = api_url
    raw["notify"]["sender"].update(lease_s=1, poll_s=0.1)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outbox.sqlite3"
    pg = os.environ.get("VOICEBOT_TEST_PG_URL")
    if not pg:
        pytest.skip("VOICEBOT_TEST_PG_URL not set")
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bookings, calls, outbox")
    return pg


async def test_killed_sender_delivers_exactly_once_after_restart(tmp_path: Path, url: str) -> None:
    tg = FakeTelegram(TOKEN, CHAT)
    await tg.start()
    config = write_config(tmp_path / "config.yaml", tg.url)
    store = open_store(url)
    await store.open()
    data = {"master": "Иван", "service_name": "Стрижка", "start": "2026-11-24T15:00:00+03:00"}
    await store.outbox.enqueue(
        [Notification("booked", "telegram", {**data, "phone": "+79161234567"})],
        "B1",
        datetime.now(UTC),
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        tg.hold = True  # the first request stalls on the way
        first = await start_sender(config, url)
        procs.append(first)
        await wait_for(lambda: tg.held == 1)
        first.send_signal(signal.SIGKILL)  # killed mid-delivery
        await first.wait()
        tg.hold = False
        tg.release.set()
        await asyncio.sleep(0.2)
        assert tg.sent == []  # the stalled request never got through
        row = (await store.outbox.list())[0]
        assert (row.status, row.attempts) == ("pending", 1)

        second = await start_sender(config, url)  # restart: the lease runs out, then delivery
        procs.append(second)
        await wait_for(lambda: len(tg.sent) == 1)

        async def sent() -> bool:
            return (await store.outbox.list())[0].status == "sent"

        for _ in range(100):
            if await sent():
                break
            await asyncio.sleep(0.05)
        second.send_signal(signal.SIGKILL)
        await second.wait()
        row = (await store.outbox.list())[0]
        assert (row.status, row.attempts) == ("sent", 2)

        third = await start_sender(config, url)  # a later process never sends it again
        procs.append(third)
        await asyncio.sleep(1.5)
        third.send_signal(signal.SIGTERM)
        await third.wait()
        assert len(tg.sent) == 1 and tg.sent[0].to == CHAT and "Иван" in tg.sent[0].text
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        await store.close()
        await tg.stop()


async def test_several_sender_processes_send_each_row_once(tmp_path: Path, url: str) -> None:
    tg = FakeTelegram(TOKEN, CHAT)
    await tg.start()
    config = write_config(tmp_path / "config.yaml", tg.url)
    store = open_store(url)
    await store.open()
    rows = [
        Notification("handoff", "telegram", {"reason": f"n{i}"}, key=f"k{i}") for i in range(20)
    ]
    await store.outbox.enqueue(rows, None, datetime.now(UTC))
    procs = [await start_sender(config, url) for _ in range(3)]
    try:
        await wait_for(lambda: len(tg.sent) >= 20, 60)
        await asyncio.sleep(1.5)  # any duplicate would arrive now
    finally:
        for p in procs:
            p.kill()
            await p.wait()
        await tg.stop()
    try:
        st = await store.outbox.stats(datetime.now(UTC))
    finally:
        await store.close()
    texts = sorted(s.text for s in tg.sent)
    assert len(texts) == 20 and len(set(texts)) == 20
    assert (st.sent, st.pending) == (20, 0)
