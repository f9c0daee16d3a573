"""Every tests/dialogues/*.yaml through the booking bot with `booking.backend: yclients`
on the local YCLIENTS emulator (a test double): the dialogue does not depend on where
the bookings live. Setup bookings are created in YCLIENTS through the backend too; the
result is checked in the emulator's journal (records with api_id = the call id)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from booking.textsim import DIALOGUES_DIR, check_expectations, load_dialogue, run_dialogue
from tests.yclients_fixtures import FAST, config_catalog, start_emulator

FILES = sorted(DIALOGUES_DIR.glob("*.yaml"))


def off_grid(spec: dict) -> bool:  # type: ignore[type-arg]
    """YCLIENTS books only the start times `book_times` lists (the company's grid, 15
    minutes here); a dialogue expecting a booking at 17:40 is a local-store dialogue."""
    for b in (spec.get("expect") or {}).get("bookings") or []:
        if datetime.fromisoformat(str(b["start"])).minute % 15:
            return True
    return False


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_dialogue_on_yclients(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_dialogue(path)
    if off_grid(spec):
        pytest.skip("books a time off the YCLIENTS grid")
    emu = await start_emulator(
        config_catalog(), datetime.fromisoformat(str(spec["now"])), rate_limit=FAST
    )
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    try:
        run = await run_dialogue(
            spec,
            f"sqlite:///{tmp_path}/calls.sqlite3",
            booking_overrides={
                "backend": "yclients",
                "yclients": {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST},
            },
        )
    finally:
        await emu.stop()
    # The local store holds no bookings with this backend: compare YCLIENTS instead.
    problems = [p for p in check_expectations(spec, run) if not p.startswith("store holds")]
    expect = spec.get("expect") or {}
    if "bookings" in expect:
        call = f"test-{spec.get('name', 'call')}"
        records = [r for r in emu.company.records if r.api_id == call and not r.deleted]
        if len(records) != len(expect["bookings"] or []):
            problems.append(f"YCLIENTS holds {len(records)} records for the call")
        assert run.store_bookings == []
    transcript = "\n".join(run.bot_lines)
    assert not problems, f"{problems}\n--- bot said:\n{transcript}"
