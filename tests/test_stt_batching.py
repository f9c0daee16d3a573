"""How caller audio is batched into recognition writes (voicebot/engine/recognition.py).

Each gRPC write costs the server the same whatever its size, so a quiet line goes out
in large batches, speech in `engine.stt_batch_ms` batches, and the moments that decide
latency — a voice onset, the caller over the bot in barge-in mode, the pause that ends an
utterance — at once. Every wait is on the virtual clock.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from voicebot.clock import VirtualClock
from voicebot.config import EngineSettings
from voicebot.engine.assembler import UtteranceAssembler
from voicebot.engine.recognition import IDLE_BATCH_MS, ContinuousRecognizer
from voicebot.providers.base import Partial, RecognitionEvent, RecognitionOptions

RATE = 8000
BATCH_MS = EngineSettings().stt_batch_ms  # speech batches (config default)
FRAME = RATE // 50 * 2  # 20 ms of LINEAR16
QUIET = bytes(FRAME)
LOUD = b"".join(
    int(8000 * math.sin(2 * math.pi * 440 * i / RATE)).to_bytes(2, "little", signed=True)
    for i in range(FRAME // 2)
)


class RecordingStream:
    """Records each write as (virtual time s, bytes); yields events pushed by the test."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.writes: list[tuple[float, int]] = []
        self.events: asyncio.Queue[RecognitionEvent | None] = asyncio.Queue()

    async def send_audio(self, pcm: bytes) -> None:
        self.writes.append((self.clock.monotonic(), len(pcm)))

    async def send_silence(self, duration_ms: int) -> None:
        self.writes.append((self.clock.monotonic(), -duration_ms))

    async def finish(self) -> None:
        await self.events.put(None)

    async def aclose(self) -> None:
        await self.events.put(None)

    async def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        while (event := await self.events.get()) is not None:
            yield event


class OneStream:
    name = "rec"

    def __init__(self, stream: RecordingStream) -> None:
        self.stream = stream

    async def open_stream(self, options: RecognitionOptions) -> RecordingStream:
        return self.stream


async def make() -> tuple[VirtualClock, ContinuousRecognizer, RecordingStream]:
    clock = VirtualClock()
    stream = RecordingStream(clock)
    assembler = UtteranceAssembler(
        normalize=False, min_voiced_ms=0, on_partial=lambda s: None, on_utterance=lambda u: None
    )
    rec = ContinuousRecognizer(
        OneStream(stream), RecognitionOptions(sample_rate=RATE), EngineSettings(), clock, assembler
    )
    return clock, rec, stream


async def feed(clock: VirtualClock, rec: ContinuousRecognizer, frame: bytes, n: int) -> None:
    """`n` frames in real time: each one fed, then 20 ms of the call's clock pass."""
    for _ in range(n):
        rec.feed(frame)
        await clock.advance(0.0)
        await clock.advance(0.02)


def sizes_ms(stream: RecordingStream) -> list[int]:
    return [n // (RATE * 2 // 1000) for _, n in stream.writes]


async def test_a_quiet_line_goes_out_in_idle_batches() -> None:
    clock, rec, stream = await make()
    await feed(clock, rec, QUIET, 100)  # 2 s, nobody speaks
    assert sizes_ms(stream) == [IDLE_BATCH_MS] * (2000 // IDLE_BATCH_MS)
    await rec.aclose()


async def test_a_voice_onset_goes_out_at_once_then_speech_in_speech_batches() -> None:
    clock, rec, stream = await make()
    await feed(clock, rec, QUIET, 10)  # 200 ms of quiet line, still batching
    assert stream.writes == []
    rec.feed(LOUD)
    at = clock.monotonic()
    await clock.advance(0.0)
    # The onset frame, with the quiet audio before it, is written without waiting.
    assert stream.writes == [(at, 11 * FRAME)]
    await clock.advance(0.02)
    await feed(clock, rec, LOUD, 5 * BATCH_MS // 20)  # five batches of speech
    assert sizes_ms(stream)[1:] == [BATCH_MS] * 5
    await rec.aclose()


async def test_while_the_bot_talks_the_callers_loud_frames_go_out_one_by_one() -> None:
    clock, rec, stream = await make()
    rec.low_latency = True  # the bot talks, barge-in mode
    await feed(clock, rec, QUIET, 50)  # the caller listens quietly: one idle batch a 0.5 s
    assert sizes_ms(stream) == [IDLE_BATCH_MS] * 2
    stream.writes.clear()
    await feed(clock, rec, LOUD, 5)  # the caller talks over the bot
    assert sizes_ms(stream) == [20] * 5
    await rec.aclose()


async def test_the_pause_that_may_end_an_utterance_goes_out_frame_by_frame() -> None:
    clock, rec, stream = await make()
    await feed(clock, rec, LOUD, 1 + 5 * BATCH_MS // 20)  # the onset, five whole batches
    await stream.events.put(Partial("алло", 0, 20 + 5 * BATCH_MS))  # an utterance is open
    await clock.advance(0.0)
    assert not rec.assembler.idle
    stream.writes.clear()
    await feed(clock, rec, QUIET, 35)  # 700 ms of pause (the provider's EOU hint)
    # Until the last 300 ms the pause is batched as speech; from then on frame by frame.
    quiet_ms = RecognitionOptions(sample_rate=RATE).eou_pause_ms - 300
    sizes = sizes_ms(stream)
    assert sizes[-15:] == [20] * 15
    assert sum(sizes[:-15]) == quiet_ms and max(sizes[:-15]) <= BATCH_MS
    await rec.aclose()


async def test_a_part_batch_goes_out_once_the_audio_stops_coming() -> None:
    """A muted microphone mid-word: what was said reaches the recognizer at the next tick,
    not at the keep-alive seconds later (which also counts its silence from there)."""
    clock, rec, stream = await make()
    await feed(clock, rec, LOUD, 3)  # the onset frame goes at once; 40 ms wait for a batch
    assert sizes_ms(stream) == [20]
    await clock.advance(0.2)  # no more frames: the session's ticker runs
    rec.tick()
    await clock.advance(0.0)
    assert sizes_ms(stream) == [20, 40]
    await rec.aclose()
