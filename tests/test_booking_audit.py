"""The per-turn audit trail is stored with the call record (same retention): what was
heard and understood, the transitions, the backend calls and what the bot said."""

from __future__ import annotations

from pathlib import Path

from booking.store.base import open_store
from booking.textsim import run_dialogue

NOW = "2026-11-23T10:00:00+03:00"


async def test_every_turn_is_audited_with_the_call_record(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    spec = {
        "name": "audit",
        "now": NOW,
        "caller": ["Укладка завтра в 12:00, я Ольга, телефон 89031112233", "Да"],
    }
    run = await run_dialogue(spec, url)
    store = open_store(url)
    await store.open()
    try:
        rec = await store.get_call("test-audit")
    finally:
        await store.close()
    assert rec is not None
    audit = rec.extracted["audit"]
    assert [e["trigger"] for e in audit] == ["greeting", "reply", "reply"]
    greet, first, confirm = audit
    assert greet["transitions"] and greet["heard"] is None and greet["said"]
    assert first["heard"].startswith("Укладка завтра")
    assert first["understood"][0]["service"] == "styling"
    assert first["transitions"], first
    # The booking turn: the backend's create call and its outcome, the booking action.
    calls = [c["call"] for c in confirm["backend"]]
    assert "create" in calls and all(c.get("ok") for c in confirm["backend"]), confirm
    assert "booking" in confirm["actions"] and "hangup" in confirm["actions"]
    assert run.bookings[0]["id"] in confirm["said"]
