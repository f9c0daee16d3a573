"""The issue's "done when", through the real command line: `voicebot simulate
--dialogue tests/dialogues/01_all_slots_at_once.yaml --config C --json` with
`booking.backend: yclients` pointed at a YCLIENTS-compatible server (the local emulator,
a test double) and `notify.telegram.api_url` at a local Telegram fake."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import yaml

from tests.fake_notify import FakeTelegram
from tests.yclients_fixtures import config_catalog, start_emulator

ROOT = Path(__file__).resolve().parent.parent
DIALOGUE = ROOT / "tests" / "dialogues" / "01_all_slots_at_once.yaml"
TOKEN, CHAT = "777:simulate", "555"


async def test_simulate_books_once_in_yclients_and_tells_telegram_once(tmp_path: Path) -> None:
    now = datetime.fromisoformat(yaml.safe_load(DIALOGUE.read_text(encoding="utf-8"))["now"])
    emu = await start_emulator(config_catalog(), now)  # the real 5 requests/s limit
    tg = FakeTelegram(TOKEN, CHAT)
    await tg.start()
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    raw["booking"]["backend"] = "yclients"
    raw["booking"]["yclients"].update(base_url=emu.url, company_id=emu.company_id)
    raw["notify"]["telegram"]["api_url"] = tg.url
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    env = {
        **os.environ,
        "YCLIENTS_PARTNER_TOKEN": emu.partner_token,
        "YCLIENTS_USER_TOKEN": emu.user_token,
        "VOICEBOT_TELEGRAM_BOT_TOKEN": TOKEN,
        "VOICEBOT_TELEGRAM_CHAT_ID": CHAT,
    }
    for key in ("YANDEX_API_KEY", "YANDEX_SA_KEY_FILE"):
        env.pop(key, None)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebot.cli",
            "simulate",
            "--dialogue",
            str(DIALOGUE),
            "--config",
            str(config),
            "--store",
            f"sqlite:///{tmp_path}/calls.sqlite3",
            "--json",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    finally:
        await emu.stop()
        await tg.stop()
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert report["outcome"] == "booked"
    calls = emu.book_record_calls()
    assert len(calls) == 1
    body = calls[0].body
    assert body["phone"] == "79161234567" and body["fullname"] == "Анна"
    assert body["appointments"][0]["staff_id"] == 101  # Иван in YCLIENTS
    assert body["appointments"][0]["services"] == [1]  # Стрижка in YCLIENTS
    assert body["appointments"][0]["datetime"] == "2026-11-24T15:00:00+03:00"
    assert report["bookings"][0]["id"] == str(emu.company.records[0].id)
    # Exactly one message to the salon's chat, sent before simulate exited.
    assert len(tg.sent) == 1 and tg.sent[0].to == CHAT
    text = tg.sent[0].text
    for part in ("24.11.2026", "15:00", "Иван", "Стрижка", "+7 916 ***-**-67"):
        assert part in text, text
    assert "1234567" not in text and "123-45-67" not in text
