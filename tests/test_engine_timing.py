"""Turn-taking, timeouts and stream rotation in virtual time: exact and instant.

Everything here runs on `VirtualClock` with in-memory fakes for the providers and the
transport, so a 30-second silence costs nothing and timings are asserted exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from voicebot.clock import VirtualClock
from voicebot.config import EngineSettings, RecoveryPolicy
from voicebot.dialogue import DialogueAction, EchoDialogue, ReplyPart, TranscriptLine
from voicebot.engine.session import TICK_S, CallSession
from voicebot.providers.base import (
    AudioCursors,
    EndOfUtterance,
    Final,
    RecognitionEvent,
    RecognitionOptions,
    SynthesisOptions,
)
from voicebot.transports.base import ClockPlayout

RATE = 16000
FRAME = bytes(RATE * 2 * 20 // 1000)  # 20 ms of silence
MS_PER_CHAR = 50  # fake synthesis: 50 ms of audio per character


class FakeStream:
    def __init__(self) -> None:
        self.events: asyncio.Queue[RecognitionEvent | None] = asyncio.Queue()
        self.audio_ms = 0
        self.silence_ms = 0
        self.closed = False

    async def send_audio(self, pcm: bytes) -> None:
        self.audio_ms += len(pcm) * 1000 // (RATE * 2)

    async def send_silence(self, duration_ms: int) -> None:
        self.silence_ms += duration_ms

    async def finish(self) -> None:
        self.events.put_nowait(None)

    async def aclose(self) -> None:
        self.closed = True
        self.events.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[RecognitionEvent]:
        while (ev := await self.events.get()) is not None:
            yield ev


class FakeRecognizer:
    name = "fake"

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    async def open_stream(self, options: RecognitionOptions) -> FakeStream:
        s = FakeStream()
        self.streams.append(s)
        return s

    def say(self, text: str, start_ms: int, end_ms: int, index: int = 0) -> None:
        """The recognizer reports an utterance (stream-relative times)."""
        s = self.streams[-1]
        s.events.put_nowait(Final(text, index, start_ms, end_ms, AudioCursors(final_index=index)))
        s.events.put_nowait(EndOfUtterance(end_ms + 700, AudioCursors(eou_time_ms=end_ms + 700)))


class FakeSynth:
    name = "fake"

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        yield bytes(len(text) * MS_PER_CHAR * options.sample_rate * 2 // 1000)


class FakeTransport:
    kind = "test"
    sample_rate = RATE

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.playout = ClockPlayout(clock, RATE)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.hung_up: str | None = None

    async def play(self, pcm: bytes) -> None:
        self.playout.add(len(pcm))

    async def clear(self) -> None:
        self.playout.clear()

    async def hangup(self, reason: str) -> None:
        self.hung_up = reason

    async def send_event(self, event: Mapping[str, Any]) -> None:
        self.events.append((self.clock.monotonic(), dict(event)))

    def bot_lines(self) -> list[tuple[float, str]]:
        return [(t, e["text"]) for t, e in self.events if e["type"] == "bot_text" and e["final"]]


class SlowEcho(EchoDialogue):
    """Thinks for two seconds before answering."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.started: list[str] = []

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        self.started.append(text)
        await self.clock.sleep(2.0)
        async for part in super().reply(text):
            yield part


def make_session(dialogue=None, **engine: Any):
    clock = VirtualClock()
    transport = FakeTransport(clock)
    recognizer = FakeRecognizer()
    settings = EngineSettings(**engine)
    session = CallSession(
        transport=transport,
        recognizer=recognizer,
        synthesizer=FakeSynth(),
        dialogue=dialogue(clock) if dialogue else EchoDialogue(),
        settings=settings,
        clock=clock,
        stt_options=RecognitionOptions(sample_rate=RATE, normalize=False),
        tts_options=SynthesisOptions(sample_rate=RATE),
    )
    return session, clock, transport, recognizer


async def talk(session: CallSession, clock: VirtualClock, seconds: float) -> None:
    """A live microphone: one 20 ms frame per 20 ms of virtual time."""
    for _ in range(round(seconds / 0.02)):
        session.feed_audio(FRAME)
        await clock.advance(0.02)


GREETING = "Здравствуйте! Я вас слушаю."
REPROMPT = "Вы меня слышите?"


async def test_silence_reprompts_on_time_then_polite_hangup() -> None:
    session, clock, transport, _ = make_session(silence_timeout_s=8.0)
    run = asyncio.create_task(session.run())
    await clock.advance(60, step=0.05)
    summary = await asyncio.wait_for(run, 1)
    lines = transport.bot_lines()
    assert [text for _, text in lines] == [GREETING, REPROMPT, REPROMPT, "До свидания."]
    greeting_end = len(GREETING) * MS_PER_CHAR / 1000
    reprompt_len = len(REPROMPT) * MS_PER_CHAR / 1000
    # Each reprompt comes 8 s after the bot stopped talking, to two session ticks: one to
    # notice playback ended, one to notice the timeout. (The final `bot_text` comes when
    # a line has been heard, so the start is the turn's first audio.)
    first, second = (t.audio_start_ms / 1000 for t in session.turns[1:3])
    assert greeting_end + 8 <= first <= greeting_end + 8 + 2 * TICK_S + 0.05
    assert first + reprompt_len + 8 <= second <= first + reprompt_len + 8 + 2 * TICK_S + 0.05
    assert transport.hung_up == "silence"
    assert summary["reason"] == "bot_hangup:silence"


async def test_caller_speech_resets_the_silence_counter() -> None:
    session, clock, transport, _ = make_session(silence_timeout_s=8.0)
    run = asyncio.create_task(session.run())
    await clock.advance(10, step=0.05)  # one reprompt
    session.feed_text("я здесь")
    await clock.advance(12, step=0.05)  # answer + another 8 s: a reprompt again, count 1
    session.end("test")
    await asyncio.wait_for(run, 1)
    texts = [text for _, text in transport.bot_lines()]
    assert texts == [GREETING, REPROMPT, "Вы сказали: я здесь.", REPROMPT]


async def test_a_newer_utterance_cancels_a_stale_turn() -> None:
    session, clock, transport, _ = make_session(dialogue=SlowEcho)
    run = asyncio.create_task(session.run())
    await clock.advance(3, step=0.05)  # greeting played
    session.feed_text("раз")
    await clock.advance(0.5, step=0.05)  # still thinking about "раз"
    session.feed_text("раз, два")
    await clock.advance(5, step=0.05)
    session.end("test")
    await asyncio.wait_for(run, 1)
    assert session.dialogue.started == ["раз", "раз, два"]
    assert [text for _, text in transport.bot_lines()][1:] == ["Вы сказали: раз, два."]


async def test_keepalive_silence_prevents_the_inactivity_abort() -> None:
    session, clock, _, recognizer = make_session(
        recovery=RecoveryPolicy(keepalive_ms=1000), silence_timeout_s=99
    )
    run = asyncio.create_task(session.run())
    await talk(session, clock, 0.2)  # the microphone starts, then goes quiet (muted)
    await clock.advance(6, step=0.05)
    session.end("test")
    await asyncio.wait_for(run, 1)
    stream = recognizer.streams[0]
    assert stream.audio_ms == 200
    # Never more than a keep-alive interval (+ one tick) without a message.
    assert 6000 - 1200 <= stream.silence_ms <= 6000


async def test_stream_rotates_at_a_pause_before_the_cap() -> None:
    session, clock, _, recognizer = make_session(
        recovery=RecoveryPolicy(rotate_s=3.5), silence_timeout_s=99
    )
    run = asyncio.create_task(session.run())
    await talk(session, clock, 3.0)
    # The caller is mid-utterance when the stream passes the rotation point: no rotation.
    recognizer.streams[0].events.put_nowait(
        Final("начало", 0, 2500, 2900, AudioCursors(final_index=0))
    )
    await talk(session, clock, 1.5)
    assert len(recognizer.streams) == 1
    recognizer.streams[0].events.put_nowait(EndOfUtterance(3600, AudioCursors(eou_time_ms=3600)))
    await talk(session, clock, 0.5)
    assert len(recognizer.streams) == 2
    assert session.recognition.rotations == 1
    # The new stream starts at the last end of utterance: call time 3600 ms.
    assert session.recognition.stream_base_ms == 3600
    assert recognizer.streams[0].closed
    session.end("test")
    await asyncio.wait_for(run, 1)
    assert [t.caller_text for t in session.turns if t.trigger == "utterance"] == ["начало"]


@pytest.mark.parametrize(
    "start_ms,answered",
    [
        (1000, False),  # during the greeting: the bot's own echo
        (1750, False),  # inside the 500 ms tail after playback
        (2300, True),  # after the tail: the caller
    ],
)
async def test_echo_gate_window(start_ms: int, answered: bool) -> None:
    session, clock, transport, recognizer = make_session(echo_tail_ms=500, silence_timeout_s=99)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 4.0)  # greeting plays 0 .. 1.35 s
    recognizer.say("алло", start_ms, start_ms + 400)
    await talk(session, clock, 3.0)
    session.end("test")
    await asyncio.wait_for(run, 1)
    replies = [text for _, text in transport.bot_lines()][1:]
    assert replies == (["Вы сказали: алло."] if answered else [])
    assert len(session.ignored_utterances) == (0 if answered else 1)


class RecordingDialogue(EchoDialogue):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.closed_with: Sequence[TranscriptLine] = ()

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        self.closed_with = list(transcript)
        return {"reason": reason}


async def test_done_event_and_transcript_on_caller_hangup() -> None:
    session, clock, transport, _ = make_session(dialogue=RecordingDialogue)
    run = asyncio.create_task(session.run())
    await clock.advance(2, step=0.05)
    session.feed_text("привет")
    await clock.advance(3, step=0.05)
    session.end("caller_hangup")
    summary = await asyncio.wait_for(run, 1)
    assert summary["reason"] == "caller_hangup"
    assert [(x.role, x.text) for x in session.dialogue.closed_with] == [
        ("bot", GREETING),
        ("caller", "привет"),
        ("bot", "Вы сказали: привет."),
    ]
    types = [e["type"] for _, e in transport.events]
    assert types[-1] == "done"
    seqs = [e["seq"] for _, e in transport.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


class BuggyDialogue(EchoDialogue):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        if text == "сломай":
            raise RuntimeError("bug in the dialogue")
        async for part in super().reply(text):
            yield part


async def test_a_crashing_dialogue_turn_costs_one_answer_not_the_call() -> None:
    session, clock, transport, _ = make_session(dialogue=BuggyDialogue)
    run = asyncio.create_task(session.run())
    await clock.advance(2, step=0.05)
    session.feed_text("сломай")
    await clock.advance(1, step=0.05)
    session.feed_text("дальше")
    await clock.advance(3, step=0.05)
    session.end("test")
    await asyncio.wait_for(run, 1)
    errors = [e for _, e in transport.events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["INTERNAL"]
    assert "bug" not in errors[0]["message"]  # internals stay in the server log
    assert [text for _, text in transport.bot_lines()][-1] == "Вы сказали: дальше."


class StreamingEcho(EchoDialogue):
    """Speaks a first sentence at once, then 'generates' the rest slowly (an LLM)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        yield "Сейчас посмотрю, что у нас есть. "
        await self.clock.sleep(3.0)
        yield f"Вы сказали: {text}."


async def test_new_input_replaces_an_answer_in_progress_and_its_queued_audio() -> None:
    session, clock, transport, _ = make_session(dialogue=StreamingEcho)
    cleared: list[float] = []
    real_clear = transport.clear

    async def clear() -> None:
        cleared.append(clock.monotonic())
        await real_clear()

    transport.clear = clear  # type: ignore[method-assign]
    run = asyncio.create_task(session.run())
    await clock.advance(2, step=0.05)
    session.feed_text("раз")
    await clock.advance(0.5, step=0.05)  # first sentence playing, the rest still coming
    assert transport.playout.is_playing()
    session.feed_text("два")
    await clock.advance(6, step=0.05)
    session.end("test")
    await asyncio.wait_for(run, 1)
    assert cleared == [pytest.approx(2.5, abs=0.06)]
    finals = [text for _, text in transport.bot_lines()]
    assert finals[-1] == "Сейчас посмотрю, что у нас есть. Вы сказали: два."
    assert not any("раз" in t for t in finals)


async def test_bot_hangup_keeps_its_reason_when_the_transport_reports_the_close() -> None:
    """A telephony transport closes its socket on hangup(), and its close handler ends
    the session as 'caller_hangup'; the summary must still say who hung up."""
    session, clock, transport, _ = make_session(silence_timeout_s=2.0)

    async def hangup(reason: str) -> None:
        transport.hung_up = reason
        session.end("caller_hangup")  # what the transport's socket-closed path does

    transport.hangup = hangup  # type: ignore[method-assign]
    run = asyncio.create_task(session.run())
    await clock.advance(30, step=0.05)
    summary = await asyncio.wait_for(run, 1)
    assert transport.hung_up == "silence"
    assert summary["reason"] == "bot_hangup:silence"


class GoodbyeDialogue(EchoDialogue):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        yield "До свидания, хорошего дня!"
        yield DialogueAction("hangup", {"reason": "goodbye"})


async def test_talking_over_the_goodbye_does_not_keep_the_call_open() -> None:
    session, clock, transport, _ = make_session(dialogue=GoodbyeDialogue)
    run = asyncio.create_task(session.run())
    await clock.advance(2, step=0.05)
    session.feed_text("пока")
    await clock.advance(0.3, step=0.05)
    session.feed_text("а ещё вопрос")  # during the goodbye
    await clock.advance(5, step=0.05)
    summary = await asyncio.wait_for(run, 1)
    assert transport.hung_up == "goodbye"
    assert summary["reason"] == "bot_hangup:goodbye"
