"""Notification channels against local fakes speaking the providers' real shapes
(Telegram, SMS.ru, SMSC), a real SMTP server (aiosmtpd) and a webhook receiver, driven
through the real outbox (SQLite) and sender on an injected clock."""

from __future__ import annotations

import email.policy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from booking.catalog import Catalog
from booking.notify.factory import build_sender
from booking.notify.message import Notification
from booking.notify.notifier import Notifier
from booking.notify.sender import OutboxSender
from booking.notify.settings import NotifySettings
from booking.notify.templates import mask_readable
from booking.store.base import BookingStore, open_store
from tests.fake_notify import FakeServer, FakeSms, FakeTelegram
from voicebot.clock import VirtualClock
from voicebot.config import load_config

TOKEN, CHAT = "123456:TEST-token", "987654321"
BOOKING = {
    "id": "K7M2QX",
    "service": "haircut",
    "service_name": "Стрижка",
    "master": "Иван",
    "start": "2026-11-24T15:00:00+03:00",
    "end": "2026-11-24T15:30:00+03:00",
    "name": "Анна",
    "phone": "+79161234567",
    "salon": "Стиль",
    "address": "Москва, улица Пушкина, дом 10",
}


@pytest.fixture(name="store")
async def store_fixture(tmp_path: Path) -> AsyncIterator[BookingStore]:
    s = open_store(f"sqlite:///{tmp_path}/n.sqlite3")
    await s.open()
    yield s
    await s.close()


def sender_for(
    store: BookingStore, raw: dict[str, Any], env: dict[str, str]
) -> tuple[OutboxSender, VirtualClock]:
    settings = NotifySettings.from_config(raw, env)
    catalog = Catalog.from_config(load_config(env={}).domain["booking"])
    clock = VirtualClock(datetime.now(UTC))
    notifier = Notifier(settings, lambda: catalog)
    return build_sender(settings, store.outbox, notifier, clock=clock), clock


async def enqueue(
    store: BookingStore, clock: VirtualClock, channel: str, kind: str = "booked", **kw: Any
) -> None:
    note = Notification(kind, channel, dict(BOOKING), **kw)  # type: ignore[arg-type]
    await store.outbox.enqueue([note], BOOKING["id"], clock.now())


async def test_telegram_send_message_and_retry_after(store: BookingStore) -> None:
    tg = FakeTelegram(TOKEN, CHAT)
    await tg.start()
    sender, clock = sender_for(
        store,
        {"telegram": {"api_url": tg.url}},
        {"VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN, "VOICEBOT_TELEGRAM_CHAT_ID": CHAT},
    )
    try:
        tg.retry_after_next, tg.retry_after = 1, 30
        await enqueue(store, clock, "telegram")
        assert await sender.run_once() == 1
        row = (await store.outbox.list())[0]
        assert row.status == "pending" and "429" in row.last_error
        assert row.next_attempt_at - clock.now() >= timedelta(seconds=29)  # retry_after honoured
        assert await sender.run_once() == 0  # not due yet
        await clock.advance(31)
        assert await sender.run_once() == 1
        assert len(tg.sent) == 1
        text = tg.sent[0].text
        assert tg.sent[0].to == CHAT
        for part in ("24.11.2026", "15:00", "Иван", "Стрижка", "+7 916 ***-**-67"):
            assert part in text
        assert "123-45-67" not in text and "1234567" not in text
        row = (await store.outbox.list())[0]
        assert (row.status, row.attempts) == ("sent", 2)
        assert await sender.run_once() == 0  # never twice
    finally:
        await sender.stop()
        await tg.stop()


async def test_telegram_bad_token_stops_the_channel(store: BookingStore) -> None:
    tg = FakeTelegram("another-token", CHAT)
    await tg.start()
    sender, clock = sender_for(
        store,
        {"telegram": {"api_url": tg.url}},
        {"VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN, "VOICEBOT_TELEGRAM_CHAT_ID": CHAT},
    )
    try:
        await enqueue(store, clock, "telegram")
        await sender.run_once()
        assert "telegram" in sender.counters.channels_down
        row = (await store.outbox.list())[0]
        assert row.status == "pending" and "Unauthorized" in row.last_error
        assert tg.sent == []
    finally:
        await sender.stop()
        await tg.stop()


async def test_smsru_status_codes(store: BookingStore) -> None:
    sms = FakeSms("smsru-key")
    await sms.start()
    sender, clock = sender_for(
        store,
        {"sms": {"provider": "smsru", "api_url": sms.url}},
        {"VOICEBOT_SMS_API_KEY": "smsru-key"},
    )
    try:
        await enqueue(store, clock, "sms", recipient="+79161234567")
        await sender.run_once()
        assert [(s.to, "Иван" in s.text) for s in sms.sent] == [("79161234567", True)]
        # 202: a bad number can never be delivered → failed at once.
        sms.smsru_code = 202
        await enqueue(store, clock, "sms", kind="cancelled", recipient="+79161234567")
        await sender.run_once()
        rows = {r.kind: r for r in await store.outbox.list()}
        assert rows["booked"].status == "sent" and rows["cancelled"].status == "failed"
        # 220: the service is down for a while → retried later.
        sms.smsru_code = 220
        await enqueue(store, clock, "sms", kind="handoff", recipient="+79161234567")
        await sender.run_once()
        assert {r.kind: r for r in await store.outbox.list()}["handoff"].status == "pending"
        sms.smsru_code = 100
        await clock.advance(10)
        await sender.run_once()
        assert {r.kind: r for r in await store.outbox.list()}["handoff"].status == "sent"
    finally:
        await sender.stop()
        await sms.stop()


async def test_smsc_ip_blocked_stops_sms_and_alerts_the_salon(store: BookingStore) -> None:
    sms, tg = FakeSms("psw", login="salon"), FakeTelegram(TOKEN, CHAT)
    await sms.start()
    await tg.start()
    sender, clock = sender_for(
        store,
        {"sms": {"provider": "smsc", "api_url": sms.url}, "telegram": {"api_url": tg.url}},
        {
            "VOICEBOT_SMS_API_KEY": "psw",
            "VOICEBOT_SMS_LOGIN": "salon",
            "VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN,
            "VOICEBOT_TELEGRAM_CHAT_ID": CHAT,
        },
    )
    try:
        await enqueue(store, clock, "sms", recipient="+79161234567")
        await sender.run_once()
        assert [s.to for s in sms.sent] == ["79161234567"]
        sms.smsc_error = 4
        await enqueue(store, clock, "sms", kind="cancelled", recipient="+79161234567")
        await enqueue(store, clock, "sms", kind="handoff", recipient="+79161234567")
        await sender.run_once()
        await sender.run_once()  # the alert row
        asked = sms.requests
        assert "sms" in sender.counters.channels_down
        assert len(tg.sent) == 1 and "sms" in tg.sent[0].text and "IP" in tg.sent[0].text
        # Stopped: no further SMS request is made while the block lasts.
        await enqueue(store, clock, "sms", kind="booked", recipient="+79160000000", key="another")
        await sender.run_once()
        assert sms.requests == asked
        pending = [r for r in await store.outbox.list() if r.channel == "sms"]
        assert sorted(r.status for r in pending) == ["pending", "pending", "pending", "sent"]
    finally:
        await sender.stop()
        await sms.stop()
        await tg.stop()


async def test_email_through_a_real_smtp_server(store: BookingStore) -> None:
    from aiosmtpd.controller import Controller

    got: list[Message] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    sender, clock = sender_for(
        store,
        {
            "email": {
                "host": "127.0.0.1",
                "port": port,
                "starttls": False,
                "from": "bot@salon.example",
                "to": ["admin@salon.example"],
            }
        },
        {},
    )
    try:
        await enqueue(store, clock, "email")
        await sender.run_once()
        assert len(got) == 1
        msg = got[0]
        assert msg["To"] == "admin@salon.example" and "Иван" in str(msg["Subject"])
        body = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert "Стрижка" in body and "+7 916 ***-**-67" in body
        assert (await store.outbox.list())[0].status == "sent"
    finally:
        await sender.stop()
        controller.stop()


async def test_webhook_carries_an_idempotency_key(store: BookingStore) -> None:
    hook = FakeServer()
    seen: list[tuple[str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.Response(text="ok")

    hook.app.router.add_post("/hook", receive)
    await hook.start()
    sender, clock = sender_for(store, {"webhook": {"url": f"{hook.url}/hook"}}, {})
    try:
        await enqueue(store, clock, "webhook")
        await sender.run_once()
        assert len(seen) == 1
        key, payload = seen[0]
        assert key == f"booked:webhook:{BOOKING['id']}"
        assert payload["event"] == "booked" and payload["id"] == BOOKING["id"]
    finally:
        await sender.stop()
        await hook.stop()


def test_phone_mask_for_the_salon_chat() -> None:
    assert mask_readable("+79161234567") == "+7 916 ***-**-67"
    assert "1234" not in mask_readable("+4915112345678")


async def test_notifications_list_cli(
    store: BookingStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    import json

    from booking.notify.cli import run_cli

    clock = VirtualClock(datetime.now(UTC))
    await enqueue(store, clock, "sms", recipient="+79161234567")
    ns = argparse.Namespace(
        notifications_command="list",
        json=True,
        status=None,
        limit=10,
        store=f"sqlite:///{tmp_path}/n.sqlite3",
        config=None,
    )
    assert await run_cli(ns) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["channel"], r["status"]) for r in rows] == [("booked", "sms", "pending")]
    assert rows[0]["recipient"] == "+*********67"  # masked
    ns.json = False
    assert await run_cli(ns) == 0
    assert "booked" in capsys.readouterr().out


async def test_a_stopped_channel_is_probed_again_later(store: BookingStore) -> None:
    from booking.notify.sender import DOWN_RETRY_S

    tg = FakeTelegram("another-token", CHAT)
    await tg.start()
    sender, clock = sender_for(
        store,
        {"telegram": {"api_url": tg.url}},
        {"VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN, "VOICEBOT_TELEGRAM_CHAT_ID": CHAT},
    )
    try:
        await enqueue(store, clock, "telegram")
        await sender.run_once()
        assert "telegram" in sender.counters.channels_down
        tg.token = TOKEN  # the salon fixed the bot token
        await clock.advance(DOWN_RETRY_S + 1)
        await sender.run_once()
        assert len(tg.sent) == 1 and sender.counters.channels_down == {}
    finally:
        await sender.stop()
        await tg.stop()
