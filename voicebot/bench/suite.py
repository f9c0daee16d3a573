"""`voicebot bench --suite`: speculative replies over the project's dialogue suite.

Every dialogue in tests/dialogues is played as a whole simulated call (espeak-ng caller
audio, the real clients, the in-process emulator with its fixed latencies, the booking
bot), a few at a time. Reported: how many caller turns had a reply prepared from the
partial transcript and played at once (hits), prepared and thrown away (misses), and
the TTS characters synthesized but never played, next to those played (TTS is billed
per character).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

DIALOGUES_DIR = Path(__file__).resolve().parents[2] / "tests" / "dialogues"
SPEED = 3.0  # simulated seconds per second (the emulator's audio-time logic is exact)
CONCURRENCY = 4


async def _one(path: Path, store_dir: Path, sem: asyncio.Semaphore) -> dict[str, Any]:
    from voicebot.config import load_config
    from voicebot.runtime import Runtime
    from voicebot.simulate import load_script, run_simulation

    async with sem:
        cfg = load_config(env={})  # offline: the in-process emulator
        cfg.dialogue.modes = []
        script = load_script(path)
        store = f"sqlite:///{store_dir / (path.stem + '.sqlite3')}"
        runtime = await Runtime.create(cfg, force_emulator=True, store=store)
        try:
            result = await run_simulation(script, cfg, speed=SPEED, runtime=runtime)
        finally:
            await runtime.aclose()
    turns = [t for t in result.session.turns if t.trigger == "utterance"]
    return {
        "name": path.stem,
        "turns": len(turns),
        "outcomes": [t.speculation for t in turns],
        "stats": dict(result.summary.get("speculation") or {}),
    }


async def _suite(files: list[Path]) -> dict[str, Any]:
    sem = asyncio.Semaphore(CONCURRENCY)
    with tempfile.TemporaryDirectory(prefix="voicebot-suite-") as tmp:
        per_file = await asyncio.gather(*(_one(f, Path(tmp), sem) for f in files))
    totals: dict[str, int] = {}
    for r in per_file:
        for k, v in r["stats"].items():
            totals[k] = totals.get(k, 0) + int(v)
    turns = sum(r["turns"] for r in per_file)
    hits, misses = totals.get("hits", 0), totals.get("misses", 0)
    spoken = totals.get("spoken_chars", 0)
    return {
        "suite": {
            "dialogues": len(per_file),
            "caller_turns": turns,
            **totals,
            "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
            "coverage": round(hits / turns, 3) if turns else None,
            "extra_share": round(totals.get("extra_chars", 0) / spoken, 3) if spoken else None,
            "speed": SPEED,
        },
        "per_file": per_file,
    }


def run_suite(files: list[Path] | None = None) -> dict[str, Any]:
    """Run the suite (blocking); returns the totals and each dialogue's outcomes."""
    logging.getLogger().setLevel(logging.ERROR)
    return asyncio.run(_suite(files or sorted(DIALOGUES_DIR.glob("*.yaml"))))
