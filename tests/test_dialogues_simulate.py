"""Every booking dialogue in tests/dialogues through `voicebot simulate`: synthesized
caller speech, the real Yandex clients, the emulator over gRPC, the booking bot, a real
SQLite store. The same files run at text level in test_booking_dialogues.py; here the
whole audio path has to deliver the same outcome.

Calls run concurrently (one runtime and store each) to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from booking.textsim import DIALOGUES_DIR, DialogueRun, check_expectations
from voicebot.config import load_config
from voicebot.runtime import Runtime
from voicebot.simulate import load_script, run_simulation

from .emulator_fixtures import fast_settings

FILES = sorted(DIALOGUES_DIR.glob("*.yaml"))
SPEED = 3.0
CONCURRENCY = 6


async def simulate_dialogue(path: Path, store_dir: Path) -> tuple[list[str], dict[str, Any]]:
    cfg = load_config()
    cfg.emulator = fast_settings()
    script = load_script(path)
    store = f"sqlite:///{store_dir}/{path.stem}.sqlite3"
    runtime = await Runtime.create(cfg, force_emulator=True, store=store)
    try:
        result = await run_simulation(script, cfg, speed=SPEED, runtime=runtime)
        report = result.report()
        bookings = await runtime.dialogues.store.list_all()
        run = DialogueRun(
            bot_lines=[t["text"] for t in report["turns"] if t["role"] == "bot"],
            actions=list(result.session.actions),
            summary=result.summary.get("dialogue", {}),
            hung_up=result.transport.hung_up is not None,
            store_bookings=[b for b in bookings if b.call_id == result.session.session_id],
        )
        problems = check_expectations({"expect": script.expect}, run)
        caller = [t["text"] for t in report["turns"] if t["role"] == "caller"]
        # As at text level (booking.textsim.run_dialogue), lines scripted after the bot
        # hung up are never spoken: what was said must be the script up to the hang-up.
        spoken = script.utterances[: len(caller)] if run.hung_up else script.utterances
        if caller != spoken:
            problems.append(f"recognized {caller} != scripted {script.utterances}")
        return problems, report
    finally:
        await runtime.aclose()


async def test_all_dialogues_through_simulate(tmp_path: Path) -> None:
    assert len(FILES) >= 30
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(path: Path) -> tuple[str, list[str], dict[str, Any]]:
        async with sem:
            problems, report = await simulate_dialogue(path, tmp_path)
            return path.stem, problems, report

    results = await asyncio.gather(*(one(p) for p in FILES))
    # Six real-time calls at 3x speed can starve on a loaded 2-core box; a dialogue that
    # fails is run once more alone, and only a second failure counts. The first
    # failures are printed, so a starved run still shows in the log.
    first = [r for r in results if r[1]]
    if first:
        print("first-run failures (re-run alone):", [name for name, _, _ in first])
        again = {name: await one(DIALOGUES_DIR / f"{name}.yaml") for name, _, _ in first}
        results = [again.get(name, (name, problems, report)) for name, problems, report in results]
    failures = {
        name: (problems, [f"{t['role']}: {t['text']}" for t in report["turns"]])
        for name, problems, report in results
        if problems
    }
    assert not failures, json.dumps(failures, ensure_ascii=False, indent=1)


def _simulate_cli(path: Path, cwd: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "simulate", "--dialogue", str(path), "--json", *extra],
        capture_output=True, text=True, timeout=180, check=True, cwd=cwd,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_simulate_cli_json_books_what_the_dialogue_asked(tmp_path: Path) -> None:
    path = DIALOGUES_DIR / "01_all_slots_at_once.yaml"
    report = _simulate_cli(path, tmp_path, "--speed", "4")
    assert set(report) >= {"turns", "latency_ms", "bookings", "events"}
    for turn in report["turns"]:
        assert set(turn) == {"role", "text", "start_ms", "end_ms"}
        assert turn["role"] in ("caller", "bot") and turn["end_ms"] >= turn["start_ms"]
    assert [t["role"] for t in report["turns"]][:2] == ["bot", "caller"]
    assert set(report["latency_ms"]) == {"turns", "median"}
    assert report["latency_ms"]["median"]["total"] > 0
    assert all(isinstance(v, int) for v in report["events"].values())
    expected = {
        "service": "haircut",
        "service_name": "Стрижка",
        "master": "Иван",
        "start": "2026-11-24T15:00:00+03:00",
        "end": "2026-11-24T15:30:00+03:00",
        "name": "Анна",
        "phone": "+79161234567",
    }
    assert report["bookings"] == [{"id": report["bookings"][0]["id"], **expected}]
    # Durable: a separate process lists it from the (sandbox) store...
    listed = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "bookings", "list", "--json", "--store", report["store"]],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert report["bookings"][0]["id"] in listed.stdout
    # ...and the same dialogue books the same slot again: simulate never accumulates
    # made-up bookings unless --store says where.
    again = _simulate_cli(path, tmp_path, "--speed", "4")
    assert [{k: v for k, v in b.items() if k != "id"} for b in again["bookings"]] == [expected]


@pytest.mark.parametrize("path", FILES[:1], ids=lambda p: p.stem)
def test_record_writes_a_stereo_wav(path: Path, tmp_path: Path) -> None:
    import wave

    wav = tmp_path / "call.wav"
    subprocess.run(
        [
            sys.executable, "-m", "voicebot.cli", "simulate", "--dialogue", str(path),
            "--speed", "4", "--record", str(wav), "--store", f"sqlite:///{tmp_path}/r.sqlite3",
        ],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    with wave.open(str(wav)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 16000
        import numpy as np

        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    # Both the caller (left) and the bot (right) are audible, and not at the same time
    # for most of the call.
    left, right = np.abs(frames[:, 0]) > 500, np.abs(frames[:, 1]) > 500
    assert left.sum() > 16000 and right.sum() > 16000
    assert (left & right).sum() < 0.05 * min(left.sum(), right.sum())
