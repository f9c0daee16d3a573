"""Races between the read-back and the caller's «да»: the slot goes to someone else, or
the turn is cancelled while the store is committing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from booking.backends.local import LocalBackend
from booking.bot import build_provider
from booking.models import NewBooking
from voicebot.clock import VirtualClock
from voicebot.config import load_config
from voicebot.dialogue import CallContext, DialogueAction

NOW = datetime.fromisoformat("2026-11-23T10:00:00+03:00")
WANTED = datetime.fromisoformat("2026-11-24T15:00:00+03:00")


async def provider(tmp_path: Path):
    domain = load_config().domain
    domain = {**domain, "booking": {**domain["booking"], "use_llm": "never"}}
    p = build_provider(domain, {"store": f"sqlite:///{tmp_path}/s.sqlite3"})
    await p.start()
    return p


async def said(parts: AsyncIterator[Any]) -> tuple[str, list[DialogueAction]]:
    text, actions = [], []
    async for part in parts:
        (actions if isinstance(part, DialogueAction) else text).append(part)
    return " ".join(text), actions


async def test_assigned_master_taken_before_yes_offers_the_same_time_with_another(
    tmp_path: Path,
) -> None:
    p = await provider(tmp_path)
    try:
        d = p.new_dialogue(CallContext("race-1", VirtualClock(NOW)))
        await said(d.greet())
        readback, _ = await said(
            d.reply("Хочу подстричься завтра в 15:00, меня зовут Анна, телефон +7 916 123-45-67")
        )
        assert "Всё верно?" in readback and "Ивану" in readback
        # Another call books Иван at 15:00 between the read-back and the «да».
        await p.store.create(
            NewBooking(
                "haircut", "Иван", WANTED, WANTED + timedelta(minutes=30), "Олег", "+79160000000"
            )
        )
        offer, actions = await said(d.reply("Да"))
        assert not [a for a in actions if a.kind == "booking"]
        first_option = offer.split(";")[0]
        assert "15:00" in first_option and ("Петр" in first_option or "Сергей" in first_option)
    finally:
        await p.aclose()


class SlowStore:
    """Delegates to the real store; `create` takes a while (a slow disk, a remote DB)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, booking: NewBooking, **kw: Any) -> Any:
        self.entered.set()
        await asyncio.sleep(0.2)
        return await self.inner.create(booking, **kw)


async def test_turn_cancelled_mid_commit_still_records_the_booking(tmp_path: Path) -> None:
    p = await provider(tmp_path)
    try:
        slow = SlowStore(p.store)
        d = p.new_dialogue(CallContext("race-2", VirtualClock(NOW)))
        d.machine.backend = LocalBackend(p.catalog, slow)
        await said(d.greet())
        await said(
            d.reply("Хочу подстричься завтра в 15:00, меня зовут Анна, телефон +7 916 123-45-67")
        )
        turn = asyncio.create_task(said(d.reply("Да")))
        await slow.entered.wait()
        turn.cancel()  # a newer utterance / barge-in / hang-up while the store commits
        try:
            await turn
        except asyncio.CancelledError:
            pass
        stored = await p.store.list_all()
        assert [(b.master, b.start, b.call_id) for b in stored] == [("Иван", WANTED, "race-2")]
        summary = await d.close([], "caller_hangup")
        assert summary["outcome"] == "booked"
        assert summary["bookings"][0]["id"] == stored[0].id
    finally:
        await p.aclose()
