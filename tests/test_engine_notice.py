"""The privacy notice (a `Notice` reply part) plays in full whatever the caller does
(docs/privacy.md, issue 15), in virtual time with the fakes of test_engine_turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from voicebot.clock import VirtualClock
from voicebot.dialogue import Notice, ReplyPart

from .test_engine_timing import talk
from .test_engine_turns import Recording, finals, finish, make, partial, say, words_at

NOTICE = "Разговор записывается для оформления записи."
GREETING = "Здравствуйте! Я вас слушаю."
NOTICE_MS = 100 + len(NOTICE) * 50  # ToneSynth: 100 ms to first byte, 50 ms a character


class NoticeFirst(Recording):
    """Echo dialogue whose greeting starts with the notice."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        super().__init__(clock)

    async def greet(self) -> AsyncIterator[ReplyPart]:
        yield Notice(NOTICE)
        yield GREETING


async def test_speech_over_the_notice_in_barge_in_mode_is_answered_after_it() -> None:
    session, clock, transport, rec = make(NoticeFirst, barge_in=True, barge_in_min_words=2)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 0.6)  # the notice is playing (100 .. 2350 ms)
    partial(rec, words_at("алло алло запишите меня", 500))
    await talk(session, clock, 0.3)
    say(rec, words_at("алло алло запишите меня", 500))
    await talk(session, clock, 1.0)  # the utterance is complete; the notice still plays
    assert session.dialogue.replied == []
    assert not [e for _, e in transport.events if e.get("kind") == "barge_in"]
    await talk(session, clock, 5.0)
    await finish(session, run)
    assert session.dialogue.replied == ["алло алло запишите меня"]
    bot = [x.text for x in session.dialogue.closed_with if x.role == "bot"]
    assert bot[0].startswith(NOTICE)  # heard in full (the rest of the greeting was cut)
    assert bot[-1] == "Вы сказали: алло алло запишите меня."
    greeting = finals(transport)[0]
    assert greeting["text"].startswith(NOTICE)
    reply_turn = session.turns[1]
    assert reply_turn.audio_start_ms is not None and reply_turn.audio_start_ms >= NOTICE_MS


async def test_text_typed_at_once_waits_for_the_notice() -> None:
    session, clock, _transport, _ = make(NoticeFirst)
    run = asyncio.create_task(session.run())
    await clock.advance(0.018)
    session.feed_text("Хочу на стрижку")
    await talk(session, clock, 6.0)
    await finish(session, run)
    assert session.dialogue.replied == ["Хочу на стрижку"]
    lines = [(x.role, x.text) for x in session.dialogue.closed_with]
    assert lines[0][0] == "bot" and lines[0][1].startswith(NOTICE)
    assert lines[-1] == ("bot", "Вы сказали: Хочу на стрижку.")
    assert session.turns[0].spoken[0].text == NOTICE  # a sentence of its own


async def test_without_a_notice_speech_still_cuts_the_greeting() -> None:
    session, clock, _transport, rec = make(barge_in=True)
    run = asyncio.create_task(session.run())
    await talk(session, clock, 0.9)
    partial(rec, words_at("алло алло", 300))
    await talk(session, clock, 0.3)
    await finish(session, run)
    assert session.turns[0].status == "interrupted"
