"""Personal data: the notice before the greeting, retention, `voicebot privacy forget`
(nothing of the phone left in the database files), logs without phones or transcripts,
and the identity proof before a booking is read out or cancelled."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from booking.bot import build_provider
from booking.models import CallRecord, NewBooking
from booking.notify.message import Notification
from booking.privacy import PrivacySettings
from booking.privacy.identity import code_candidates
from booking.store.base import open_store
from booking.textsim import run_dialogue
from voicebot.clock import VirtualClock
from voicebot.config import load_config
from voicebot.dialogue import CallContext

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-23T10:00:00+03:00"
OWNER = "+79160000000"
BOOKING = {
    "service": "haircut",
    "master": "Иван",
    "start": "2026-11-24T15:00:00+03:00",
    "name": "Олег",
    "phone": OWNER,
}


def test_settings_parse_and_reject_unknown_keys() -> None:
    s = PrivacySettings.from_config({"notice": " Запись разговора. ", "retention_days": 30})
    assert s.notice == "Запись разговора." and s.retention_days == 30
    assert PrivacySettings.from_config(None).retention_days == 90
    with pytest.raises(ValueError, match=r"privacy\.retension_days"):
        PrivacySettings.from_config({"retension_days": 1})
    with pytest.raises(ValueError):
        PrivacySettings.from_config({"retention_days": 0})


async def test_notice_is_spoken_before_the_greeting_and_empty_turns_it_off(tmp_path: Path) -> None:
    domain = load_config().domain
    for notice in ("Разговор записывается для оформления записи.", ""):
        provider = build_provider(
            {**domain, "privacy": {"notice": notice}},
            {"store": f"sqlite:///{tmp_path}/n{len(notice)}.sqlite3"},
        )
        await provider.start()
        try:
            ctx = CallContext("n1", VirtualClock(datetime.fromisoformat(NOW)))
            parts = [p async for p in provider.new_dialogue(ctx).greet() if isinstance(p, str)]
        finally:
            await provider.aclose()
        if notice:
            assert parts[0] == notice and "Здравствуйте" in " ".join(parts[1:])
        else:
            assert "Здравствуйте" in parts[0] and "записывается" not in " ".join(parts)


async def _seed_person(url: str) -> str:
    store = open_store(url)
    await store.open()
    tz = datetime.fromisoformat(NOW).tzinfo
    try:
        start = datetime(2026, 11, 24, 15, tzinfo=tz)
        b = await store.create(
            NewBooking(
                "haircut",
                "Иван",
                start,
                start + timedelta(minutes=30),
                "Зинаида",
                "+79161234567",
                "call-zina",
            ),
            notify=[
                Notification("booked", "sms", {"name": "Зинаида"}, recipient="+79161234567"),
                Notification("booked", "telegram", {"phone": "+79161234567", "name": "Зинаида"}),
            ],
        )
        other = await store.create(
            NewBooking("haircut", "Петр", start, start + timedelta(minutes=30), "Олег", OWNER)
        )
        for cid, text, bid in (
            ("call-zina", "Меня зовут Зинаида, 8 (916) 123-45-67", b.id),
            ("call-later", "Это снова я, номер +7 916 123 45 67, перенесите", None),
            ("call-other", "Олег, +7 916 000-00-00", other.id),
        ):
            await store.save_call(
                CallRecord(
                    cid,
                    start - timedelta(days=1),
                    start - timedelta(days=1),
                    "booked",
                    "bot_hangup",
                    [{"role": "caller", "text": text, "at_ms": 1}],
                    {"slots": {"phone": "+79161234567" if bid == b.id else None}},
                    "итог",
                    bid,
                    {},
                )
            )
    finally:
        await store.close()
    return b.id


def test_forget_leaves_no_trace_of_the_phone_in_the_database_files(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "s.sqlite3"
    url = f"sqlite:///{db}"
    bid = asyncio.run(_seed_person(url))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "privacy",
            "forget",
            "--phone",
            "8 916 123-45-67",
            "--store",
            url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "АКТ об уничтожении" in out and bid in out and "call-zina" in out
    assert "call-later" in out and "call-other" not in out and "9161234567" not in out
    assert "Уведомления удалены из очереди отправки: 2" in out
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.sqlite3"))
    for needle in ("9161234567", "916) 123-45-67", "916 123 45 67", "Зинаида"):
        assert needle.encode() not in raw, needle
    assert b"9160000000" in raw  # the other client is untouched
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT name, phone FROM bookings WHERE id = ?", (bid,)).fetchone() == (
            "",
            "",
        )
        for table in ("bookings", "calls", "outbox"):
            dump = json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall(), ensure_ascii=False)
            assert "9161234567" not in re.sub(r"\D", "", dump.replace("9160000000", ""))
    finally:
        conn.close()


async def test_purge_applies_both_retention_terms(tmp_path: Path) -> None:
    from booking.privacy.retention import purge

    store = open_store(f"sqlite:///{tmp_path}/p.sqlite3")
    await store.open()
    try:
        now = datetime(2026, 11, 23, 10, tzinfo=UTC)
        old = await store.create(
            NewBooking(
                "haircut",
                "Иван",
                now - timedelta(days=40),
                now - timedelta(days=40) + timedelta(minutes=30),
                "Старый",
                "+79031112233",
                "old-call",
            )
        )
        new = await store.create(
            NewBooking(
                "haircut",
                "Иван",
                now + timedelta(days=1),
                now + timedelta(days=1, minutes=30),
                "Новый",
                "+79034445566",
                "new-call",
            )
        )
        for cid, age, bid in (
            ("old-call", 40, old.id),
            ("recent", 5, None),
            ("ancient", 100, None),
        ):
            t = now - timedelta(days=age)
            await store.save_call(CallRecord(cid, t, t, "x", "y", [], {}, "", bid, {}))
        report = await purge(
            store, PrivacySettings(retention_days=90, booking_retention_days=30), now
        )
        assert report.bookings_anonymized == (old.id,)
        assert set(report.calls_deleted) == {"ancient", "old-call"}
        assert (await store.get(old.id)).phone == "" and (await store.get(new.id)).name == "Новый"
        assert await store.get_call("recent") is not None
        again = await purge(
            store, PrivacySettings(retention_days=90, booking_retention_days=30), now
        )
        assert again.empty
    finally:
        await store.close()


def test_code_candidates_read_spoken_codes() -> None:
    assert "K7M2QX" in code_candidates("номер записи К7М 2Q-Х")
    assert "K7M2QX" in code_candidates("k7m2qx")
    assert code_candidates("запись на завтра") == []
    assert "4815162" in code_candidates("номер записи 48 15 162")  # a YCLIENTS record id


# ---------------------------------------------------------------- who may hear a booking


async def _cancel_call(tmp_path: Path, caller: list[str], caller_id: str | None = None):
    spec = {"name": "stranger", "now": NOW, "setup": {"bookings": [BOOKING]}, "caller": caller}
    url = f"sqlite:///{tmp_path}/c.sqlite3"
    run = await run_dialogue(spec, url, caller_id=caller_id)
    store = open_store(url)
    await store.open()
    try:
        active = await store.list_all()
        record = await store.get_call("test-stranger")
    finally:
        await store.close()
    return run, active, record


def _heard_details(run) -> bool:
    said = " ".join(run.bot_lines)
    return "Нашла запись" in said or "15:00" in said or "Иван" in said


async def test_stranger_with_only_the_phone_hears_nothing_and_gets_a_call_back(
    tmp_path: Path,
) -> None:
    run, active, record = await _cancel_call(
        tmp_path, ["Хочу отменить запись", "+7 916 000-00-00", "Меня зовут Пётр", "Да"]
    )
    assert not _heard_details(run) and len(active) == 1
    assert any("перезвонит" in line for line in run.bot_lines)
    (note,) = record.stats["notes"]
    assert note["kind"] == "identity_not_proven" and note["phone"] == OWNER
    assert note["booking_ids"] == [active[0].id]  # the salon's page links it for a call-back


async def test_stranger_with_a_wrong_code_hears_nothing(tmp_path: Path) -> None:
    run, active, _ = await _cancel_call(
        tmp_path, ["Отмените запись", "+7 916 000-00-00", "Номер записи ABC234", "Да"]
    )
    assert not _heard_details(run) and len(active) == 1


async def test_stranger_calling_from_another_number_must_prove(tmp_path: Path) -> None:
    run, active, _ = await _cancel_call(
        tmp_path,
        ["Отмените запись на номер +7 916 000-00-00", "Не помню", "Да"],
        caller_id="+79035550000",
    )
    assert not _heard_details(run) and len(active) == 1


async def test_an_unknown_number_gets_the_same_words_as_a_client_number(tmp_path: Path) -> None:
    known, _, _ = await _cancel_call(
        tmp_path / "a", ["Отмените запись", "+7 916 000-00-00", "Пётр"]
    )
    unknown, _, _ = await _cancel_call(
        tmp_path / "b", ["Отмените запись", "+7 916 999-99-99", "Пётр"]
    )
    assert known.bot_lines[1:] == unknown.bot_lines[1:]


@pytest.mark.parametrize(
    ("caller", "caller_id"),
    [
        (["Хочу отменить запись", "Да"], OWNER),  # caller id
        (["Хочу отменить запись", "+7 916 000-00-00", "Олег", "Да"], None),  # name + phone
    ],
)
async def test_the_owner_proves_and_cancels(tmp_path: Path, caller, caller_id) -> None:
    run, active, _ = await _cancel_call(tmp_path, caller, caller_id=caller_id)
    assert _heard_details(run) and active == []


async def test_the_booking_code_alone_proves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/code.sqlite3"
    spec = {"name": "code", "now": NOW, "setup": {"bookings": [BOOKING]}, "caller": []}
    await run_dialogue(spec, url)
    store = open_store(url)
    await store.open()
    (b,) = await store.list_all()
    await store.close()
    spaced = " ".join(b.id)
    run = await run_dialogue(
        {"name": "code2", "now": NOW, "caller": [f"Хочу отменить запись номер {spaced}", "Да"]}, url
    )
    assert _heard_details(run) and run.summary["outcome"] == "cancelled"


def test_logs_of_a_full_simulated_call_hold_no_phone_and_no_transcript(tmp_path: Path) -> None:
    """DEBUG logs of `voicebot simulate` (the booking, the call record, the engine) are
    grepped for the phone in any spelling and for every caller and bot line."""
    dialogue = REPO / "tests" / "dialogues" / "01_all_slots_at_once.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "--log-level",
            "DEBUG",
            "simulate",
            "--dialogue",
            str(dialogue),
            "--json",
            "--speed",
            "4",
            "--store",
            f"sqlite:///{tmp_path}/log.sqlite3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("YANDEX_")},
    )
    report = json.loads(proc.stdout)
    assert report["outcome"] == "booked"
    logs = proc.stderr
    assert "DEBUG" in logs and "booked" in logs  # logging was on, and saw the booking
    for spelling in ("+79161234567", "9161234567", "916 123-45-67", "916) 123"):
        assert spelling not in logs, spelling
    lines = [t["text"] for t in report["turns"]]
    assert len(lines) >= 4
    for line in lines:
        for sentence in re.split(r"(?<=[.!?,])\s+", line):
            if len(sentence) > 12:
                assert sentence not in logs, sentence


async def test_a_speculative_reply_in_the_proof_step_changes_nothing(tmp_path: Path) -> None:
    """The engine may speculate on a partial («Пётр» before the caller finished); the
    sandbox must not clear the pending proof or write a refusal note into the call."""
    domain = load_config().domain
    provider = build_provider(domain, {"store": f"sqlite:///{tmp_path}/spec.sqlite3"})
    await provider.start()
    try:
        await provider.prepare({"bookings": [BOOKING]})
        dialogue = provider.new_dialogue(
            CallContext("spec", VirtualClock(datetime.fromisoformat(NOW)))
        )
        [p async for p in dialogue.greet()]
        [p async for p in dialogue.reply("Хочу отменить запись")]
        asked = [p async for p in dialogue.reply("+7 916 000-00-00")]
        assert any("номер записи или имя" in str(p) for p in asked)
        await dialogue.speculate("Меня зовут Пётр")
        said = [p async for p in dialogue.reply("Запись на имя Олег")]
        assert any("Нашла запись" in str(p) for p in said)
        assert dialogue.machine.state.proof.notes == []
    finally:
        await provider.aclose()


async def test_name_and_phone_in_one_sentence_prove_at_once(tmp_path: Path) -> None:
    run, active, _ = await _cancel_call(
        tmp_path, ["Это Олег, хочу отменить запись, телефон +7 916 000-00-00", "Да"]
    )
    assert _heard_details(run) and active == []
    stranger, still, _ = await _cancel_call(
        tmp_path / "s", ["Это Пётр, хочу отменить запись, телефон +7 916 000-00-00", "Да"]
    )
    assert not _heard_details(stranger) and len(still) == 1


async def test_the_yclients_record_number_proves_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the YCLIENTS backend the booking code read out is the record id (a number):
    with the phone it proves the booking; alone it does not."""
    from tests.yclients_fixtures import FAST, config_catalog, start_emulator

    emu = await start_emulator(config_catalog(), datetime.fromisoformat(NOW), rate_limit=FAST)
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    overrides = {
        "backend": "yclients",
        "yclients": {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST},
    }
    url = f"sqlite:///{tmp_path}/calls.sqlite3"
    try:
        seed = {"name": "seed", "now": NOW, "setup": {"bookings": [BOOKING]}, "caller": []}
        await run_dialogue(seed, url, booking_overrides=overrides)
        (record,) = [r for r in emu.company.records if not r.deleted]
        spaced = " ".join(str(record.id))
        alone = await run_dialogue(
            {"name": "yc0", "now": NOW, "caller": [f"Отмените запись номер {spaced}", "Да"]},
            url,
            booking_overrides=overrides,
        )
        assert not _heard_details(alone)  # a bare number proves nothing without the phone
        caller = ["Отмените запись", "+7 916 000-00-00", f"Номер записи {spaced}", "Да"]
        run = await run_dialogue(
            {"name": "yc", "now": NOW, "caller": caller}, url, booking_overrides=overrides
        )
        assert _heard_details(run) and run.summary["outcome"] == "cancelled"
        assert [r for r in emu.company.records if not r.deleted] == []
    finally:
        await emu.stop()
