"""Notifications from real dialogues (local backend, SQLite): a booking, a cancellation
and a handoff each tell the salon's Telegram chat exactly once; a booking that fails in
the backend tells nothing false; the webhook keeps working through the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from booking.store.base import open_store
from booking.textsim import DIALOGUES_DIR, load_dialogue, run_dialogue
from tests.fake_notify import FakeTelegram

TOKEN, CHAT = "31337:dialogues", "4242"


@pytest.fixture(name="telegram")
async def telegram_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeTelegram:
    tg = FakeTelegram(TOKEN, CHAT)
    await tg.start()
    monkeypatch.setenv("VOICEBOT_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("VOICEBOT_TELEGRAM_CHAT_ID", CHAT)
    yield tg  # type: ignore[misc]
    await tg.stop()


@pytest.mark.parametrize(
    ("name", "kind", "needles"),
    [
        ("01_all_slots_at_once", "booked", ["Новая запись", "24.11.2026", "15:00", "Иван"]),
        ("18_cancel_by_phone", "cancelled", ["Отмена записи", "24.11.2026", "+7 916 ***-**-00"]),
        ("16_human_handoff", "handoff", ["передан администратору"]),
    ],
)
async def test_one_message_per_event(
    telegram: FakeTelegram, tmp_path: Path, name: str, kind: str, needles: list[str]
) -> None:
    spec = load_dialogue(DIALOGUES_DIR / f"{name}.yaml")
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    await run_dialogue(spec, url, notify={"telegram": {"api_url": telegram.url}})
    assert len(telegram.sent) == 1, [s.text for s in telegram.sent]
    for needle in needles:
        assert needle in telegram.sent[0].text
    store = open_store(url)
    await store.open()
    try:
        rows = await store.outbox.list()
    finally:
        await store.close()
    assert [(r.kind, r.status) for r in rows] == [(kind, "sent")]


async def test_failed_booking_is_never_announced(
    telegram: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booking.store.sqlite import SqliteStore

    async def broken(self: SqliteStore, booking: object, **kw: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(SqliteStore, "create", broken)
    spec = load_dialogue(DIALOGUES_DIR / "01_all_slots_at_once.yaml")
    run = await run_dialogue(
        spec, f"sqlite:///{tmp_path}/s.sqlite3", notify={"telegram": {"api_url": telegram.url}}
    )
    assert run.summary["outcome"] == "transfer"
    assert not any("вы записаны" in line for line in run.bot_lines)
    assert any("Соединяю с администратором" in line for line in run.bot_lines)
    # Only the handoff reaches the salon, never a "new booking".
    assert [("передан администратору" in s.text) for s in telegram.sent] == [True]


def test_no_sms_from_the_bot_when_yclients_texts_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booking.bot import build_provider
    from voicebot.config import load_config

    monkeypatch.setenv("VOICEBOT_SMS_API_KEY", "k")
    domain = load_config(env={}).domain
    yc = {"company_id": 1, "notify_by_sms": 24}
    section = {**domain["booking"], "backend": "yclients", "yclients": yc}
    notify = {"sms": {"provider": "smsru"}}
    store = {"store": f"sqlite:///{tmp_path}/s.sqlite3"}
    p = build_provider({**domain, "booking": section, "notify": notify}, store)
    assert p.notify_settings.sms.active and p.notifier.sms_skipped
    assert "sms" not in p.notifier.channels_for("booked")
    local = build_provider({**domain, "notify": notify}, store)
    assert local.notifier.channels_for("booked") == ["sms"]


async def test_outbox_stats_for_metrics(telegram: FakeTelegram, tmp_path: Path) -> None:
    from booking.bot import build_provider
    from voicebot.config import load_config

    domain = {**load_config(env={}).domain, "notify": {"telegram": {"api_url": telegram.url}}}
    p = build_provider(domain, {"store": f"sqlite:///{tmp_path}/s.sqlite3"})
    await p.start()
    try:
        await p.handoff("call-1", "caller_request", {"service": "haircut", "phone": None})
        assert p.sender is not None
        await p.sender.drain(5)
        st = await p.outbox_stats()
        assert (st.sent, st.pending, st.failed) == (1, 0, 0)
        assert (await p.sender.stats()).sent == 1
        assert "Стрижка" in telegram.sent[0].text
    finally:
        await p.aclose()
