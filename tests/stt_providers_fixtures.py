"""Speech audio and helpers shared by the streaming-STT provider tests.

Audio is real synthesized Russian speech (espeak-ng), converted with sox to LINEAR16
mono at the rate under test, made once per session.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from voicebot.clock import RealClock
from voicebot.config import EngineSettings, RecoveryPolicy
from voicebot.engine.assembler import Utterance, UtteranceAssembler
from voicebot.engine.recognition import ContinuousRecognizer
from voicebot.providers.base import (
    EndOfUtterance,
    Final,
    FinalRefinement,
    RecognitionEvent,
    RecognitionOptions,
    RecognitionStream,
    SpeechRecognizer,
)

PHRASES = {
    "haircut": "запишите меня на стрижку",
    "tomorrow": "завтра в три часа дня",
    "name": "меня зовут иван петров",
}


def _synth(text: str, rate: int, out: Path) -> bytes:
    wav = out.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", "ru", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(
        [
            "sox",
            str(wav),
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            "-t",
            "raw",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], bytes]:
    """`speech(key, rate)` -> PCM of PHRASES[key] at `rate`."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed for speech audio")
    cache: dict[tuple[str, int], bytes] = {}
    d = tmp_path_factory.mktemp("speech")

    def get(key: str, rate: int) -> bytes:
        if (key, rate) not in cache:
            cache[key, rate] = _synth(PHRASES[key], rate, d / f"{key}_{rate}.raw")
        return cache[key, rate]

    return get


def silence(ms: int, rate: int) -> bytes:
    return bytes(rate * ms // 1000 * 2)


def call_audio(
    speech: Callable[[str, int], bytes], keys: list[str], rate: int, gap_ms: int = 1500
) -> bytes:
    """Lead-in silence, then each phrase followed by `gap_ms` of silence."""
    out = bytearray(silence(300, rate))
    for k in keys:
        out += speech(k, rate) + silence(gap_ms, rate)
    return bytes(out)


async def feed(
    stream: RecognitionStream, pcm: bytes, rate: int, *, chunk_ms: int = 100, pace: float = 0.0
) -> None:
    """Send `pcm` in `chunk_ms` chunks; `pace` seconds of wall time between chunks."""
    step = rate * chunk_ms // 1000 * 2
    for i in range(0, len(pcm), step):
        await stream.send_audio(pcm[i : i + step])
        await asyncio.sleep(pace)


async def collect(
    stream: RecognitionStream, *, eous: int | None = None, limit_s: float = 15.0
) -> list[RecognitionEvent]:
    """Events until `eous` ends of utterance (or the stream ends); ProviderError propagates."""
    events: list[RecognitionEvent] = []

    async def run() -> None:
        async for ev in stream:
            events.append(ev)
            if eous is not None and sum(isinstance(e, EndOfUtterance) for e in events) >= eous:
                return

    await asyncio.wait_for(run(), limit_s)
    return events


def utterances(events: list[RecognitionEvent]) -> list[str]:
    """What the engine's assembler makes of events: one text per end of utterance, from
    the finals since the previous one, preferring a refinement's text."""
    out: list[str] = []
    finals: dict[int, str] = {}
    order: list[int] = []
    for ev in events:
        if isinstance(ev, Final):
            if ev.final_index not in finals:
                order.append(ev.final_index)
            finals[ev.final_index] = ev.text
        elif isinstance(ev, FinalRefinement) and ev.final_index in finals:
            finals[ev.final_index] = ev.text
        elif isinstance(ev, EndOfUtterance):
            text = " ".join(finals[i] for i in order if finals[i]).strip()
            if text:
                out.append(text)
            finals.clear()
            order.clear()
    return out


def norm(text: str) -> str:
    """Compare texts the way a caller would hear them: case and punctuation aside."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


async def recognize_call(
    recognizer: SpeechRecognizer,
    options: RecognitionOptions,
    pcm: bytes,
    *,
    expect: int,
    chunk_ms: int = 100,
    pace: float = 0.0,
    idle_s: float = 0.0,
    policy: RecoveryPolicy | None = None,
    limit_s: float = 20.0,
) -> list[str]:
    """What a call hears: `pcm` through the engine's `ContinuousRecognizer` (which owns
    reconnect, replay and keep-alive) until `expect` utterances; `idle_s` of silence
    on the line before the audio (the recognizer's keep-alive ticks meanwhile)."""
    heard: list[str] = []
    done = asyncio.Event()

    def on_utterance(utt: Utterance) -> None:
        heard.append(utt.text)
        if len(heard) >= expect:
            done.set()

    assembler = UtteranceAssembler(
        normalize=options.normalize,
        min_voiced_ms=0,
        on_partial=lambda seg: None,
        on_utterance=on_utterance,
    )
    rec = ContinuousRecognizer(
        recognizer,
        options,
        EngineSettings(recovery=policy or RecoveryPolicy(backoff_s=0.05)),
        RealClock(),
        assembler,
    )

    async def ticker() -> None:
        while True:
            rec.tick()
            await asyncio.sleep(0.02)

    tick = asyncio.create_task(ticker())
    try:
        if idle_s:
            rec.feed(silence(100, options.sample_rate))
            await asyncio.sleep(idle_s)
        step = options.sample_rate * chunk_ms // 1000 * 2
        for i in range(0, len(pcm), step):
            rec.feed(pcm[i : i + step])
            await asyncio.sleep(pace)
        await asyncio.wait_for(done.wait(), limit_s)
    finally:
        tick.cancel()
        await rec.aclose()
    return heard
