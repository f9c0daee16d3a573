"""Caller speech and transcript for `voicebot bench`, prepared once before the run.

espeak-ng runs only here, never while calls are measured. Each line is kept with the
index of its last voiced 20 ms frame (the emulator's own energy VAD decides), so the
load generator knows the exact moment the caller stops speaking.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from voicebot.emulator.espeak import EspeakSynthesizer
from voicebot.emulator.vad import EnergyVad

FRAME_MS = 20

# What callers say (the audio). The emulator does not recognize it: the text each
# utterance "gets" is the next line of the global transcript script below.
CALLER_LINES = (
    "Здравствуйте, хочу записаться на стрижку",
    "Завтра",
    "В двенадцать часов",
    "Ольга",
    "Восемь девятьсот три пятьсот пятьдесят пять двенадцать тридцать четыре",
    "Да, всё верно",
    "На укладку",
    "Послезавтра в десять",
)

_NAMES = ("Ольга", "Анна", "Мария", "Игорь", "Павел", "Елена", "Дмитрий", "Светлана")
_SERVICES = ("На стрижку", "На укладку", "Стрижка и борода")
_DAYS = ("Завтра", "Послезавтра", "В пятницу", "В субботу")


def transcript(lines_needed: int) -> list[str]:
    """A realistic booking conversation, repeated with varying slots and callers."""
    out: list[str] = []
    k = 0
    while len(out) < lines_needed:
        hour = 9 + k % 11
        minute = "30" if (k // 11) % 2 else "00"
        out += [
            "Здравствуйте, хочу записаться",
            _SERVICES[k % len(_SERVICES)],
            _DAYS[(k // 3) % len(_DAYS)],
            f"В {hour}:{minute}",
            _NAMES[k % len(_NAMES)],
            f"8 903 {555 + k % 400:03d}-{k % 100:02d}-{(k * 7) % 100:02d}",
            "Да, всё верно",
        ]
        k += 1
    return out[:lines_needed]


def last_voiced_frame(pcm: bytes, rate: int) -> int:
    vad = EnergyVad(rate, frame_ms=FRAME_MS)
    frames = vad.feed(pcm + bytes(vad.frame_samples * 2))
    idx = np.flatnonzero(frames.voiced)
    return int(idx[-1]) if len(idx) else 0


async def _synthesize(rate: int) -> list[tuple[bytes, int]]:
    synth = EspeakSynthesizer()
    out = []
    for text in CALLER_LINES:
        pcm = await synth.synthesize(text, sample_rate=rate)
        frame = rate * 2 * FRAME_MS // 1000
        pcm = pcm + bytes(-len(pcm) % frame)  # whole frames
        out.append((pcm, last_voiced_frame(pcm, rate)))
    return out


def prepare(directory: Path, rate: int) -> Path:
    """Write `caller_<rate>.json` + PCM files under `directory` (once); return the index."""
    directory.mkdir(parents=True, exist_ok=True)
    index = directory / f"caller_{rate}.json"
    if index.exists():
        return index
    lines = asyncio.run(_synthesize(rate))
    entries = []
    for i, (pcm, last) in enumerate(lines):
        f = directory / f"caller_{rate}_{i:02d}.pcm"
        f.write_bytes(pcm)
        entries.append({"file": f.name, "last_voiced_frame": last})
    index.write_text(json.dumps({"rate": rate, "lines": entries}), encoding="utf-8")
    return index


def load(index: Path) -> tuple[int, list[tuple[bytes, int]]]:
    data = json.loads(index.read_text(encoding="utf-8"))
    lines = [
        ((index.parent / e["file"]).read_bytes(), int(e["last_voiced_frame"]))
        for e in data["lines"]
    ]
    return int(data["rate"]), lines
