"""Caller speech and transcript for `voicebot bench`, prepared once before the run.

espeak-ng runs only here, never while calls are measured. Each line is kept with the
index of its last voiced 20 ms frame (the emulator's own energy VAD decides), so the
load generator knows the exact moment the caller stops speaking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import numpy as np

from voicebot.emulator.espeak import EspeakSynthesizer
from voicebot.emulator.vad import EnergyVad

FRAME_MS = 20

# Each bench call is one coherent booking conversation (the emulator gets the texts
# through the transport's emulator hook, the server hears the matching audio), varied
# per call so that concurrent calls rarely want the same master at the same time.
# The first line names the service: a bare «хочу записаться» is not understood by the
# booking parsers and would take the YandexGPT path on every call.
_OPENINGS = (
    "Здравствуйте, хочу записаться на стрижку",
    "Добрый день, запишите меня на укладку",
    "Здравствуйте, мне нужна стрижка и борода",
)
_DAYS = (
    "Завтра",
    "Послезавтра",
    "В понедельник",
    "В среду",
    "В четверг",
    "В пятницу",
    "В субботу",
)
_TIMES = tuple(f"В {h}:{m:02d}" for h in range(9, 20) for m in (0, 15, 30, 45))
_NAMES = ("Ольга", "Анна", "Мария", "Игорь", "Павел", "Елена", "Дмитрий", "Светлана")
_PHONES = tuple(
    f"8 9{k % 10}3 {555 + k * 7:03d}-{k * 13 % 90 + 10:02d}-{k * 29 % 90 + 10:02d}"
    for k in range(30)
)
_CONFIRM = "Да, всё верно"


def conversation(k: int) -> list[str]:
    """The k-th caller's lines, in the order the booking bot asks for them."""
    return [
        _OPENINGS[k % len(_OPENINGS)],
        _DAYS[(k // len(_OPENINGS)) % len(_DAYS)],
        _TIMES[(k // (len(_OPENINGS) * len(_DAYS))) % len(_TIMES)],
        _NAMES[k % len(_NAMES)],
        _PHONES[k % len(_PHONES)],
        _CONFIRM,
    ]


def all_lines() -> list[str]:
    """Every text any conversation uses: the audio synthesized before the run."""
    return list(dict.fromkeys((*_OPENINGS, *_DAYS, *_TIMES, *_NAMES, *_PHONES, _CONFIRM)))


def last_voiced_frame(pcm: bytes, rate: int) -> int:
    """Index of the last frame of `pcm` (20 ms frames at `rate` Hz) the energy VAD calls
    voiced."""
    vad = EnergyVad(rate, frame_ms=FRAME_MS)
    frames = vad.feed(pcm + bytes(vad.frame_samples * 2))
    idx = np.flatnonzero(frames.voiced)
    return int(idx[-1]) if len(idx) else 0


async def _synthesize(rate: int, texts: list[str]) -> list[tuple[bytes, int]]:
    synth = EspeakSynthesizer()
    frame = rate * 2 * FRAME_MS // 1000
    sem = asyncio.Semaphore(4)

    async def one(text: str) -> tuple[bytes, int]:
        async with sem:
            pcm = await synth.synthesize(text, sample_rate=rate)
        pcm = pcm + bytes(-len(pcm) % frame)  # whole frames
        return pcm, last_voiced_frame(pcm, rate)

    return list(await asyncio.gather(*(one(t) for t in texts)))


def prepare(directory: Path, rate: int) -> Path:
    """Write `caller_<rate>.json` + PCM files under `directory` (once); return the index."""
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / f"caller_{rate}.json"
    texts = all_lines()
    if index.exists():
        with contextlib.suppress(ValueError, KeyError):
            if [e["text"] for e in json.loads(index.read_text("utf-8"))["lines"]] == texts:
                return index
    lines = asyncio.run(_synthesize(rate, texts))
    entries = []
    for i, (text, (pcm, last)) in enumerate(zip(texts, lines, strict=True)):
        f = directory / f"caller_{rate}_{i:03d}.pcm"
        f.write_bytes(pcm)
        entries.append({"text": text, "file": f.name, "last_voiced_frame": last})
    index.write_text(json.dumps({"rate": rate, "lines": entries}), encoding="utf-8")
    return index


def load(index: Path) -> tuple[int, dict[str, tuple[bytes, int]]]:
    """The sample rate and, per text, its PCM and the index of its last voiced frame."""
    data = json.loads(index.read_text(encoding="utf-8"))
    lines = {
        e["text"]: ((index.parent / e["file"]).read_bytes(), int(e["last_voiced_frame"]))
        for e in data["lines"]
    }
    return int(data["rate"]), lines
