"""Turn-taking faults of issue 13, each in virtual time (VirtualClock, in-memory fakes).

Every test here failed before the fix: a prompt answer dropped by the 500 ms gate, echo
words answered, two replies recorded for one spoken, an interrupted greeting stored
whole, a continuation dropped, `audio_start_ms` overwritten.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from voicebot.clock import VirtualClock
from voicebot.config import EngineSettings
from voicebot.dialogue import EchoDialogue, ReplyPart, TranscriptLine
from voicebot.engine.session import CallSession
from voicebot.providers.base import (
    AudioCursors,
    EndOfUtterance,
    Final,
    Partial,
    RecognitionOptions,
    SynthesisOptions,
    Word,
)

from .test_engine_timing import (
    FRAME,
    GREETING,
    MS_PER_CHAR,
    RATE,
    FakeRecognizer,
    FakeTransport,
    talk,
)

# Two sentences, "Здравствуйте!" and "Я вас слушаю.": 26 characters, 1300 ms of audio
# after the 100 ms time to first byte: the greeting plays 100 .. 1400 ms.
GREETING_MS = 100 + (len(GREETING) - 1) * MS_PER_CHAR


class ToneSynth:
    """Fake synthesis with audible audio (a 300 Hz tone), 50 ms per character, after a
    100 ms time to first byte."""

    name = "tone"

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        await self.clock.sleep(0.1)
        n = len(text) * MS_PER_CHAR * options.sample_rate // 1000
        t = np.arange(n) / options.sample_rate
        yield (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


class Recording(EchoDialogue):
    """Echo dialogue that records what the engine reports as unheard."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        super().__init__()
        self.replied: list[str] = []
        self.unheard: list[tuple[str, str]] = []
        self.closed_with: Sequence[TranscriptLine] = ()

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        self.replied.append(text)
        async for part in super().reply(text):
            yield part

    def on_unheard(self, said: str, heard: str) -> None:
        self.unheard.append((said, heard))

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        self.closed_with = list(transcript)
        return {}


class SlowRecording(Recording):
    """Thinks a second before answering (the LLM), so a continuation can come first."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock)
        self.clock = clock

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        self.replied.append(text)
        await self.clock.sleep(1.0)
        yield f"Вы сказали: {text}. Записываю вас. Что-нибудь ещё?"


def make(
    dialogue: type[Recording] = Recording, *, kind: str = "test", synth: Any = None, **engine: Any
) -> tuple[CallSession, VirtualClock, FakeTransport, FakeRecognizer]:
    clock = VirtualClock()
    transport = FakeTransport(clock)
    transport.kind = kind
    recognizer = FakeRecognizer()
    session = CallSession(
        transport=transport,
        recognizer=recognizer,
        synthesizer=synth or ToneSynth(clock),
        dialogue=dialogue(clock),
        settings=EngineSettings(**{"silence_timeout_s": 99, **engine}),
        clock=clock,
        stt_options=RecognitionOptions(sample_rate=RATE, normalize=False),
        tts_options=SynthesisOptions(sample_rate=RATE),
    )
    return session, clock, transport, recognizer


def words_at(text: str, start_ms: int, per_word_ms: int = 300) -> tuple[Word, ...]:
    return tuple(
        Word(w, start_ms + i * per_word_ms, start_ms + (i + 1) * per_word_ms - 20)
        for i, w in enumerate(text.split())
    )


def say(rec: FakeRecognizer, words: tuple[Word, ...], index: int = 0, eou: bool = True) -> None:
    """A SpeechKit-shaped final (with word times) and its end of utterance."""
    s = rec.streams[-1]
    text = " ".join(w.text for w in words)
    start, end = words[0].start_ms, words[-1].end_ms
    cur = AudioCursors(final_index=index)
    s.events.put_nowait(Final(text, index, start, end, cur, words))
    if eou:
        s.events.put_nowait(EndOfUtterance(end + 700, AudioCursors(eou_time_ms=end + 700)))


def partial(rec: FakeRecognizer, words: tuple[Word, ...]) -> None:
    text = " ".join(w.text for w in words)
    rec.streams[-1].events.put_nowait(
        Partial(text, words[0].start_ms, words[-1].end_ms, AudioCursors(), words)
    )


def finals(transport: FakeTransport) -> list[dict[str, Any]]:
    return [e for _, e in transport.events if e["type"] == "bot_text" and e["final"]]


async def finish(session: CallSession, run: asyncio.Task[Any]) -> None:
    session.end("test")
    await asyncio.wait_for(run, 1)


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize("kind", ["voximplant", "browser", "test"])
async def test_a_caller_answering_200_ms_after_the_bot_is_answered(kind: str) -> None:
    session, clock, _transport, rec = make(kind=kind, barge_in=False)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 1.6)  # the greeting plays 0 .. 1.35 s
    say(rec, words_at("хочу записаться", GREETING_MS + 200))
    await talk(session, clock, 3.5)
    await finish(session, run)
    assert session.dialogue.replied == ["хочу записаться"]
    assert session.ignored_utterances == []


async def test_only_the_echo_words_of_an_utterance_are_dropped() -> None:
    """The first word starts inside the tail (echo); the rest are the caller's. (No
    canceller here: on a line it found echo-free there is no echo to time out.)"""
    session, clock, _transport, rec = make(echo_tail_ms=500, barge_in=False, echo_canceller="off")
    run = asyncio.create_task(session.run())
    await talk(session, clock, 1.6)
    say(rec, words_at("слушаю хочу записаться", GREETING_MS + 250))  # 1550, 1850, 2150
    await talk(session, clock, 3.5)
    await finish(session, run)
    assert session.dialogue.replied == ["хочу записаться"]
    assert session.gate.dropped_words == 1


@pytest.mark.parametrize("barge_in", [False, True])
async def test_late_echo_of_the_bots_words_is_echo_whatever_the_tail(barge_in: bool) -> None:
    """The greeting comes back 350 ms late (a long echo path): the words repeat the
    bot's own, each aligned with its bot word: echo, not a turn — in barge-in mode too,
    where no timing rule applies."""
    session, clock, _transport, rec = make(barge_in=barge_in, echo_tail_ms=100)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 1.6)
    # "Я вас слушаю." plays 750 .. 1400 ms (я 750, вас 850, слушаю 1050); echo +350 ms.
    say(rec, (Word("я", 1100, 1180), Word("вас", 1200, 1380), Word("слушаю", 1400, 1750)))
    await talk(session, clock, 3.5)
    await finish(session, run)
    assert session.dialogue.replied == []
    assert len(session.ignored_utterances) == 1
    assert session.turns[0].status == "played"  # nothing was cut either


async def test_a_caller_repeating_the_bots_words_later_is_answered() -> None:
    """An offered option said back a second after the bot finished is the caller's."""
    session, clock, _transport, rec = make(barge_in=False)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 1.6)
    say(rec, words_at("я вас слушаю", GREETING_MS + 900))
    await talk(session, clock, 3.5)
    await finish(session, run)
    assert session.dialogue.replied == ["я вас слушаю"]


async def test_echo_partials_in_barge_in_mode_never_interrupt_the_bot() -> None:
    """The bot's own words come back as partials while it plays: no barge-in."""
    session, clock, transport, rec = make(barge_in=True, barge_in_min_words=2)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 1.05)
    # The greeting's own words, each heard just after the bot said it (30 ms echo path).
    partial(rec, (Word("здравствуйте", 130, 620), Word("я", 780, 830), Word("вас", 850, 990)))
    await talk(session, clock, 1.0)
    await finish(session, run)
    assert not [e for _, e in transport.events if e.get("kind") == "barge_in"]
    assert finals(transport)[0]["text"] == GREETING  # played to the end


async def test_the_callers_words_interrupt_within_300_ms_of_their_partial() -> None:
    session, clock, transport, rec = make(barge_in=True, barge_in_min_words=2)
    cleared: list[float] = []
    real_clear = transport.clear

    async def clear() -> None:
        cleared.append(clock.monotonic())
        await real_clear()

    transport.clear = clear  # type: ignore[method-assign]
    run = asyncio.create_task(session.run())
    await talk(session, clock, 0.9)
    partial(rec, words_at("нет подождите", 400))
    sent = clock.monotonic()
    await talk(session, clock, 0.5)
    await finish(session, run)
    assert cleared and cleared[0] - sent <= 0.3
    # The greeting was cut where it was: 0.8 s of 1.3 s heard, not the whole line.
    assert finals(transport)[0]["interrupted"] is True
    assert finals(transport)[0]["text"] == "Здравствуйте! Я"


# --------------------------------------------------------------------------- truth


async def test_two_quick_inputs_record_only_the_reply_that_was_spoken() -> None:
    session, clock, transport, _ = make()
    run = asyncio.create_task(session.run())
    await talk(session, clock, 2.0)
    session.feed_text("раз")
    await clock.advance(0.03)
    session.feed_text("два")
    await talk(session, clock, 3.0)
    await finish(session, run)
    spoken = [e for e in finals(transport) if not e.get("cancelled")]
    assert [e["text"] for e in spoken] == [GREETING, "Вы сказали: два."]
    cancelled = [e for e in finals(transport) if e.get("cancelled")]
    assert [e["generated"] for e in cancelled] == ["Вы сказали: раз."]
    bot_lines = [x.text for x in session.dialogue.closed_with if x.role == "bot"]
    assert bot_lines == [GREETING, "Вы сказали: два."]
    assert session.dialogue.unheard == [("Вы сказали: раз.", "")]


async def test_an_interrupted_greeting_is_stored_as_far_as_it_played() -> None:
    session, clock, _transport, rec = make(barge_in=True)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 0.9)
    partial(rec, words_at("алло алло", 300))
    await talk(session, clock, 0.3)
    say(rec, words_at("алло алло", 300))
    await talk(session, clock, 3.0)
    await finish(session, run)
    transcript = [(x.role, x.text) for x in session.dialogue.closed_with]
    assert transcript[0] == ("bot", "Здравствуйте! Я")
    assert ("caller", "алло алло") in transcript
    assert session.dialogue.unheard[0] == (GREETING, "Здравствуйте! Я")
    assert session.turns[0].status == "interrupted"


async def test_a_streamed_reply_starts_when_its_first_audio_plays() -> None:
    """`audio_start_ms` is the first sentence's start, not the last one's."""
    session, clock, _transport, _ = make(dialogue=SlowRecording)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 2.0)
    session.feed_text("раз")
    await talk(session, clock, 6.0)
    await finish(session, run)
    reply = session.turns[1]
    assert reply.audio_start_ms == pytest.approx(3100, abs=60)  # 1 s thinking + 0.1 s TTFB
    assert len(reply.spoken) == 3
    assert reply.audio_end_ms is not None and reply.audio_end_ms > reply.audio_start_ms + 2000


# --------------------------------------------------------------------------- continuations


async def test_a_pause_mid_thought_is_answered_as_one_utterance() -> None:
    """Phrase, a 1 s pause, phrase: the second half starts before the answer to the
    first plays, so that answer is cancelled and the joined utterance answered."""
    session, clock, transport, rec = make(dialogue=SlowRecording, barge_in=False)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 2.0)
    # (the fake recognizer delivers at once: the utterance is complete at 2.0 s)
    say(rec, words_at("хочу на стрижку", 1600), index=0)
    await talk(session, clock, 0.6)  # the answer is being thought about (1 s)
    more = words_at("завтра после обеда", 2500)
    partial(rec, more[:1])
    await talk(session, clock, 0.8)
    say(rec, more, index=1)
    await talk(session, clock, 6.0)
    await finish(session, run)
    assert session.dialogue.replied[-1] == "хочу на стрижку завтра после обеда"
    spoken = [e["text"] for e in finals(transport) if not e.get("cancelled")]
    assert spoken[-1].startswith("Вы сказали: хочу на стрижку завтра после обеда.")
    assert [e["kind"] for _, e in transport.events if e["type"] == "action"] == ["continuation"]


async def test_a_continuation_after_the_answer_started_is_answered_after_the_sentence() -> None:
    """Gate mode on an echo-free line: the caller speaks over the answer's first
    sentence; it is answered when that sentence ends, not dropped."""
    session, clock, transport, rec = make(dialogue=SlowRecording, barge_in=False)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 2.0)  # greeting heard over a quiet microphone
    session.feed_text("раз")
    await talk(session, clock, 1.4)  # the answer plays from ~3.1 s; first sentence 0.8 s
    say(rec, words_at("и ещё маникюр", 3200))
    await talk(session, clock, 0.2)
    assert session.aec is not None and session.aec.echo_free
    await talk(session, clock, 6.0)
    await finish(session, run)
    assert session.dialogue.replied == ["раз", "и ещё маникюр"]
    first = next(e for e in finals(transport) if e["turn_id"] == session.turns[1].id)
    assert first["interrupted"] is True
    assert first["text"] == "Вы сказали: раз."  # cut at the end of its first sentence


async def test_continuation_noise_brings_the_cancelled_answer_back() -> None:
    session, clock, transport, rec = make(dialogue=SlowRecording, barge_in=False)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 2.0)
    say(rec, words_at("хочу на стрижку", 1600), index=0)
    await talk(session, clock, 0.6)
    partial(rec, words_at("э", 2500))
    await talk(session, clock, 0.3)
    # The recognizer retracts it: an empty final closes nothing.
    rec.streams[-1].events.put_nowait(Final("", 1, 2500, 2600, AudioCursors(final_index=1)))
    rec.streams[-1].events.put_nowait(EndOfUtterance(3300, AudioCursors(eou_time_ms=3300)))
    await talk(session, clock, 5.0)
    await finish(session, run)
    assert session.dialogue.replied == ["хочу на стрижку", "хочу на стрижку"]
    spoken = [e["text"] for e in finals(transport) if not e.get("cancelled")]
    assert spoken[-1].startswith("Вы сказали: хочу на стрижку.")


def test_channel_defaults_and_overrides() -> None:
    s = EngineSettings()
    assert s.for_channel("voximplant").echo_tail_ms == 100
    assert s.for_channel("voximplant").barge_in is True
    assert s.for_channel("browser").barge_in is False
    assert (
        EngineSettings(echo_tail_ms=400, barge_in=False).for_channel("audiosocket").barge_in
        is False
    )
    assert FRAME  # the fixture microphone frame is silence
