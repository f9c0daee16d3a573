"""Speculative replies and «waiting for the rest», in virtual time (fake providers)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from booking.bot import build_provider
from tests.test_engine_timing import FRAME, RATE, FakeRecognizer, FakeSynth, FakeTransport
from voicebot.clock import VirtualClock
from voicebot.config import EngineSettings, load_config
from voicebot.dialogue import CallContext, EchoDialogue, ReplyPart, Speculation
from voicebot.engine.session import CallSession
from voicebot.providers.base import AudioCursors, Partial, RecognitionOptions, SynthesisOptions

VOICE = (np.sin(np.arange(RATE // 50) * 2 * np.pi * 200 / RATE) * 3000).astype("<i2").tobytes()


class CountingSynth(FakeSynth):
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        self.texts.append(text)
        async for pcm in super().synthesize(text, options):
            yield pcm


class DecidingDialogue(EchoDialogue):
    """Deterministic: the decision is the caller's words without case or punctuation."""

    def __init__(self) -> None:
        super().__init__()
        self.last_decision: Any = None
        self.sandboxed: list[str] = []

    @staticmethod
    def _decide(text: str) -> tuple[str, str]:
        words = " ".join(re.findall(r"\w+", text.lower()))
        return words, f"Принято: {words}. Что ещё?"

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        self.last_decision, answer = self._decide(text)
        yield answer

    async def speculate(self, text: str) -> Speculation | None:
        self.sandboxed.append(text)
        key, answer = self._decide(text)
        return Speculation(key, (answer,))


def make(dialogue: Any, synth: Any = None, **engine: Any) -> tuple[Any, ...]:
    clock = VirtualClock(datetime.fromisoformat("2026-11-23T10:00:00+03:00"))
    transport = FakeTransport(clock)
    recognizer = FakeRecognizer()
    synth = synth or CountingSynth()
    session = CallSession(
        transport=transport,
        recognizer=recognizer,
        synthesizer=synth,
        dialogue=dialogue,
        settings=EngineSettings(silence_timeout_s=99, **engine),
        clock=clock,
        stt_options=RecognitionOptions(sample_rate=RATE, normalize=True),
        tts_options=SynthesisOptions(sample_rate=RATE),
    )
    return session, clock, transport, recognizer, synth


async def feed(session: CallSession, clock: VirtualClock, ms: int, *, voiced: bool) -> None:
    """The microphone for `ms`: speech-level tone or silence, 20 ms frames."""
    for _ in range(ms // 20):
        session.feed_audio(VOICE if voiced else FRAME)
        await clock.advance(0.02)


def partial(recognizer: FakeRecognizer, text: str, start_ms: int, end_ms: int) -> None:
    cur = AudioCursors(partial_time_ms=end_ms)
    recognizer.streams[-1].events.put_nowait(Partial(text, start_ms, end_ms, cur))


async def one_turn(final_text: str, partial_text: str, **engine: Any) -> tuple[Any, ...]:
    session, clock, transport, recognizer, synth = make(DecidingDialogue(), **engine)
    run = asyncio.create_task(session.run())
    await feed(session, clock, 4000, voiced=False)  # the greeting plays
    t0 = session.recognition.fed_ms
    await feed(session, clock, 1000, voiced=True)  # the caller speaks ...
    partial(recognizer, partial_text, t0, t0 + 1000)
    await feed(session, clock, 700, voiced=False)  # ... the EOU pause runs ...
    recognizer.say(final_text, t0, t0 + 1000)  # ... and the normalized final arrives
    await feed(session, clock, 4000, voiced=False)
    session.end("test")
    summary = await asyncio.wait_for(run, 1)
    return session, transport, synth, summary


async def test_same_decision_plays_the_prepared_audio() -> None:
    session, transport, synth, summary = await one_turn("Привет, мир!", "привет мир")
    (turn,) = [t for t in session.turns if t.trigger == "utterance"]
    assert turn.speculation == "hit"
    piece = "Принято: привет мир."
    assert synth.texts.count(piece) == 1  # synthesized once, before the final
    assert session.dialogue.sandboxed == ["привет мир"]
    stats = summary["speculation"]
    assert (stats["hits"], stats["misses"], stats["extra_chars"]) == (1, 0, 0)
    assert stats["spoken_chars"] >= len(piece)
    assert [text for _, text in transport.bot_lines()][1] == "Принято: привет мир. Что ещё?"


async def test_other_decision_discards_the_prepared_audio() -> None:
    session, transport, synth, summary = await one_turn("Пока, мир!", "привет мир")
    (turn,) = [t for t in session.turns if t.trigger == "utterance"]
    assert turn.speculation == "miss"
    assert "Принято: пока мир." in synth.texts  # the real answer was synthesized
    stats = summary["speculation"]
    assert (stats["hits"], stats["misses"]) == (0, 1)
    assert stats["extra_chars"] == len("Принято: привет мир.")
    assert [text for _, text in transport.bot_lines()][1] == "Принято: пока мир. Что ещё?"


async def test_no_speculation_while_the_caller_is_still_talking_or_when_off() -> None:
    session, clock, _, recognizer, _ = make(DecidingDialogue())
    run = asyncio.create_task(session.run())
    await feed(session, clock, 4000, voiced=False)
    t0 = session.recognition.fed_ms
    partial(recognizer, "привет", t0, t0 + 300)
    await feed(session, clock, 1500, voiced=True)  # stable text, but the voice goes on
    assert session.dialogue.sandboxed == []
    session.end("test")
    await asyncio.wait_for(run, 1)
    off, *_ = make(DecidingDialogue(), speculation=False)
    assert off.speculator is None
    llm_like, *_ = make(EchoDialogue())  # no `speculate`: an LLM dialogue is never speculated
    assert llm_like.speculator is None


# ---------------------------------------------------------------- waiting for the rest


class Unfinished(EchoDialogue):
    def expects_more(self, text: str) -> bool:
        return text.rstrip().endswith(" на") or text == "на"


async def test_unfinished_phrase_is_answered_alone_after_the_wait() -> None:
    session, clock, transport, recognizer, _ = make(Unfinished(), continuation_wait_ms=1500)
    run = asyncio.create_task(session.run())
    await feed(session, clock, 4000, voiced=False)
    t0 = session.recognition.fed_ms
    recognizer.say("Запишите меня на", t0 - 1200, t0 - 700)
    await feed(session, clock, 1400, voiced=False)
    assert [text for _, text in transport.bot_lines()][1:] == []  # still waiting
    await feed(session, clock, 2000, voiced=False)
    session.end("test")
    summary = await asyncio.wait_for(run, 1)
    assert [text for _, text in transport.bot_lines()][1:] == ["Вы сказали: Запишите меня на."]
    assert summary["continuation"]["expired"] == 1


async def test_phone_in_two_parts_with_a_900_ms_pause_is_one_number(tmp_path: Path) -> None:
    clock = VirtualClock(datetime.fromisoformat("2026-11-23T10:00:00+03:00"))
    provider = build_provider(
        {**load_config(env={}).domain}, {"store": f"sqlite:///{tmp_path}/p.sqlite3"}
    )
    await provider.start()
    dialogue = provider.new_dialogue(CallContext(session_id="phone", clock=clock))
    transport, recognizer = FakeTransport(clock), FakeRecognizer()
    session = CallSession(
        transport=transport,
        recognizer=recognizer,
        synthesizer=FakeSynth(),
        dialogue=dialogue,
        settings=EngineSettings(silence_timeout_s=99),  # continuation_wait_ms: 1500
        clock=clock,
        stt_options=RecognitionOptions(sample_rate=RATE, normalize=True),
        tts_options=SynthesisOptions(sample_rate=RATE),
    )
    run = asyncio.create_task(session.run())
    await feed(session, clock, 12000, voiced=False)  # the greeting
    session.feed_text("Хочу подстричься завтра в 15:00, меня зовут Анна")
    await feed(session, clock, 20000, voiced=False)  # ... the bot asks for the phone
    assert dialogue.machine.expecting == "phone"
    t0 = session.recognition.fed_ms
    await feed(session, clock, 1000, voiced=True)  # «8 916»
    await feed(session, clock, 700, voiced=False)
    recognizer.say("8 916", t0, t0 + 1000)  # EOU after 700 ms of the 900 ms pause
    await feed(session, clock, 200, voiced=False)
    await feed(session, clock, 1500, voiced=True)  # «123-45-67» (past the 1500 ms wait)
    await feed(session, clock, 700, voiced=False)
    recognizer.say("123-45-67", t0 + 1900, t0 + 3400, index=1)
    await feed(session, clock, 20000, voiced=False)
    session.end("test")
    summary = await asyncio.wait_for(run, 1)
    await provider.aclose()
    said = " ".join(text for _, text in transport.bot_lines())
    assert "телефон +7 916 123-45-67" in said  # the read-back has the whole number
    caller = [line.text for line in session.transcript if line.role == "caller"]
    assert caller[-1] == "8 916 123-45-67"
    assert summary["continuation"] == {
        "holds": 1,
        "joined": 1,
        "expired": 0,
        "onset_cancels": 1,
    }
    utterance_turns = [t for t in session.turns if t.trigger == "utterance"]
    assert len(utterance_turns) == 1  # the first half was never answered on its own
