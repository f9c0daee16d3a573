"""The provider as the engine sees it: caller id, webhook, stored call record, concurrent
calls on one slot, the generated diagram and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from booking.bot import build_provider
from booking.cli import run_cli
from booking.diagram import DOC_PATH, document, mermaid
from booking.machine import TRANSITIONS
from booking.state import Phase
from booking.store.base import open_store
from booking.textsim import run_dialogue
from voicebot.clock import VirtualClock
from voicebot.config import load_config
from voicebot.dialogue import CallContext, DialogueAction

NOW = "2026-11-23T10:00:00+03:00"


def test_committed_diagram_matches_the_machine() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == document()
    text = mermaid()
    for phase in Phase:
        assert phase.name in text
    assert len(TRANSITIONS) > 20


def test_every_phase_is_reachable_and_terminals_exist() -> None:
    reach = {Phase.GREETING}
    changed = True
    while changed:
        changed = False
        for t in TRANSITIONS:
            if t.source in reach and t.target not in reach:
                reach.add(t.target)
                changed = True
    assert reach == set(Phase)


async def test_caller_id_prefills_phone_and_is_read_back(tmp_path: Path) -> None:
    spec = {
        "name": "caller_id",
        "now": NOW,
        "caller": ["Стрижка завтра в 15:00, меня зовут Анна", "Да"],
    }
    run = await run_dialogue(spec, f"sqlite:///{tmp_path}/s.sqlite3", caller_id="89161234567")
    assert any("+7 916 123-45-67. Всё верно?" in line for line in run.bot_lines)
    (b,) = run.bookings
    assert b["phone"] == "+79161234567"


async def test_cancel_uses_caller_id(tmp_path: Path) -> None:
    spec = {
        "name": "cancel_caller_id",
        "now": NOW,
        "setup": {
            "bookings": [
                {
                    "service": "styling",
                    "master": "Петр",
                    "start": "2026-11-25T12:00:00+03:00",
                    "name": "Олег",
                    "phone": "+79160000000",
                }
            ]
        },
        "caller": ["Хочу отменить свою запись", "Да"],
    }
    run = await run_dialogue(spec, f"sqlite:///{tmp_path}/s.sqlite3", caller_id="+79160000000")
    assert run.summary["outcome"] == "cancelled"
    (action,) = [a for a in run.actions if a.kind == "booking_cancelled"]
    assert action.data["master"] == "Петр"
    store = open_store(f"sqlite:///{tmp_path}/s.sqlite3")
    await store.open()
    try:
        assert await store.list_all() == []
    finally:
        await store.close()


async def test_call_record_is_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    spec = {
        "name": "record",
        "now": NOW,
        "caller": ["Укладка завтра в 12:00, я Ольга, телефон 89031112233", "Да"],
    }
    run = await run_dialogue(spec, url)
    store = open_store(url)
    await store.open()
    try:
        rec = await store.get_call("test-record")
    finally:
        await store.close()
    assert rec is not None and rec.outcome == "booked"
    assert rec.booking_id == run.bookings[0]["id"]
    assert "Ольга" in rec.summary and rec.transcript[0]["role"] == "bot"
    assert rec.extracted["slots"]["service"] == "styling"
    assert rec.stats["llm_share"] == 0.0


async def test_twenty_simultaneous_calls_one_booking(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    provider = build_provider(load_config().domain, {"store": url})
    await provider.start()
    try:

        async def call(i: int) -> list[Any]:
            ctx = CallContext(f"c{i}", VirtualClock(datetime.fromisoformat(NOW)))
            d = provider.new_dialogue(ctx)
            parts = [p async for p in d.greet()]
            for text in [
                f"Стрижка к Ивану завтра в 15:00, меня зовут Анна, телефон +7 916 000-00-{i:02d}",
                "Да",
            ]:
                parts += [p async for p in d.reply(text)]
            return parts

        results = await asyncio.gather(*(call(i) for i in range(20)))
        booked = [
            p
            for parts in results
            for p in parts
            if isinstance(p, DialogueAction) and p.kind == "booking"
        ]
        assert len(booked) == 1
        # Everyone else heard that the time is taken (at the check, or at commit time).
        losers = [parts for parts in results if not any(p in booked for p in parts)]
        assert len(losers) == 19
        for parts in losers:
            said = " ".join(str(p) for p in parts)
            assert "только что заняли" in said or "мастер Иван занят" in said
            assert "Могу предложить" in said
        assert len(await provider.store.list_all()) == 1
    finally:
        await provider.aclose()


async def test_webhook_posted_in_background(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        run = await run_dialogue(
            {
                "name": "hook",
                "now": NOW,
                "caller": ["Стрижка завтра в 15:00, я Анна, 89161234567", "Да"],
            },
            f"sqlite:///{tmp_path}/s.sqlite3",
            booking_overrides={"webhook_url": f"http://127.0.0.1:{port}/hook"},
        )
    finally:
        await runner.cleanup()
    assert len(got) == 1
    assert got[0]["id"] == run.bookings[0]["id"] and got[0]["phone"] == "+79161234567"


async def test_failing_webhook_does_not_break_the_call(tmp_path: Path) -> None:
    run = await run_dialogue(
        {
            "name": "badhook",
            "now": NOW,
            "caller": ["Стрижка завтра в 15:00, я Анна, 89161234567", "Да"],
        },
        f"sqlite:///{tmp_path}/s.sqlite3",
        booking_overrides={"webhook_url": "http://127.0.0.1:9/nothing-listens"},
    )
    assert run.summary["outcome"] == "booked"


async def test_cli_list_and_cancel(tmp_path: Path, capsys: Any) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    run = await run_dialogue(
        {
            "name": "cli",
            "now": NOW,
            "caller": ["Стрижка завтра в 15:00, я Анна, 89161234567", "Да"],
        },
        url,
    )
    bid = run.bookings[0]["id"]
    ns = argparse.Namespace(
        bookings_command="list", date="2026-11-24", json=True, store=url, config=None
    )
    assert await run_cli(ns) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in listed] == [bid]
    assert listed[0]["service_name"] == "Стрижка" and listed[0]["start"].endswith("+03:00")
    ns = argparse.Namespace(bookings_command="cancel", id=bid, store=url, config=None)
    assert await run_cli(ns) == 0
    assert await run_cli(ns) == 1
    store = open_store(url)
    await store.open()
    try:  # the change counter the calendar feed publishes as SEQUENCE
        assert (await store.get(bid)).seq == 1
    finally:
        await store.close()
    ns = argparse.Namespace(bookings_command="list", date=None, json=True, store=url, config=None)
    await run_cli(ns)
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == []


def test_unknown_booking_backend_is_a_config_error(tmp_path: Path) -> None:
    cfg = load_config(env={})
    section = dict(cfg.domain["booking"], backend="calendar")
    with pytest.raises(ValueError, match=r"booking\.backend"):
        build_provider({"booking": section}, {"store": f"sqlite:///{tmp_path}/s.sqlite3"})


def test_unknown_yclients_and_notify_keys_are_config_errors(tmp_path: Path) -> None:
    cfg = load_config(env={})
    store = {"store": f"sqlite:///{tmp_path}/s.sqlite3"}
    bad = dict(cfg.domain["booking"], yclients={"company": 1})
    with pytest.raises(ValueError, match=r"booking\.yclients\.company"):
        build_provider({"booking": bad}, store)
    with pytest.raises(ValueError, match=r"notify\.telegram\.url"):
        build_provider({**cfg.domain, "notify": {"telegram": {"url": "x"}}}, store)
    with pytest.raises(ValueError, match=r"notify\.sms\.enabled"):
        build_provider({**cfg.domain, "notify": {"sms": {"enabled": True}}}, store)


async def test_call_record_keeps_answer_latency_channel_and_errors(tmp_path: Path) -> None:
    """Engine events reach the dialogue (`on_event`): answers' latency only (not the
    greeting or a silence reprompt), errors, and the channel, in the stored record."""
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    provider = build_provider(load_config().domain, {"store": url})
    await provider.start()
    try:
        ctx = CallContext("lat", VirtualClock(datetime.fromisoformat(NOW)), channel="voximplant")
        dialogue = provider.new_dialogue(ctx)
        for trigger, total in (
            ("greeting", 500.0),
            ("utterance", 812.34),
            ("silence", 300.0),
            ("text", 640.0),
        ):
            dialogue.on_event({"type": "turn", "trigger": trigger, "latency_ms": {"total": total}})
        dialogue.on_event({"type": "error", "code": "TTS_UNAVAILABLE"})
        await dialogue.close([], "caller_hangup")
        record = await provider.store.get_call("lat")
    finally:
        await provider.aclose()
    assert record.stats["turn_latency_ms"] == [812.3, 640.0]
    assert record.stats["channel"] == "voximplant" and record.stats["errors"] == ["TTS_UNAVAILABLE"]


async def test_an_hour_outside_both_halves_of_the_day_is_answered_with_the_hours(
    tmp_path: Path,
) -> None:
    """Issue #11: «в 10» in a salon open 12:00–20:00 is neither 10:00 nor 22:00: the bot
    says its hours instead of asking «10:00 или 22:00?» or guessing."""
    from booking.textsim import run_dialogue

    spec = {
        "name": "outside_hours",
        "now": "2026-11-23T10:00:00+03:00",
        "caller": ["Стрижка завтра в 10", "Тогда в 2"],
    }
    run = await run_dialogue(
        spec,
        f"sqlite:///{tmp_path}/s.sqlite3",
        use_llm="never",
        booking_overrides={"salon": {"hours": {"open": "12:00", "close": "20:00"}}},
    )
    said = "\n".join(run.bot_lines)
    assert "Мы работаем с 12:00 до 20:00" in said
    assert "22:00" not in said
    assert "в 14:00" in said  # «в 2» resolves to the afternoon inside those hours


async def test_a_readback_the_caller_did_not_hear_cannot_be_confirmed(tmp_path: Path) -> None:
    """The read-back was cut by an interruption (the engine reports what was heard):
    a "да" then confirms nothing; the read-back is repeated, and only a "да" to a
    read-back heard in full books."""
    provider = build_provider(load_config().domain, {"store": f"sqlite:///{tmp_path}/s.sqlite3"})
    await provider.start()
    try:
        d = provider.new_dialogue(CallContext("c1", VirtualClock(datetime.fromisoformat(NOW))))
        [p async for p in d.greet()]
        parts = [
            p async for p in d.reply("Стрижка к Ивану завтра в 15:00, я Анна, телефон 89160000001")
        ]
        said = " ".join(p for p in parts if isinstance(p, str))
        assert "Всё верно?" in said
        d.on_unheard(said, said[:20])  # the caller cut it after a few words
        again = [p async for p in d.reply("Да")]
        assert not any(isinstance(p, DialogueAction) for p in again)
        assert "Всё верно?" in " ".join(p for p in again if isinstance(p, str))
        booked = [p async for p in d.reply("Да")]
        assert "booking" in [p.kind for p in booked if isinstance(p, DialogueAction)]
    finally:
        await provider.aclose()
