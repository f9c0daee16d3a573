"""The cache of repeated sentences in front of TTS (voicebot/providers/tts_cache.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voicebot.providers.base import ProviderError, SynthesisOptions
from voicebot.providers.tts_cache import CachingSynthesizer, cacheable

OPTS = SynthesisOptions(sample_rate=8000, voice="alena")


class CountingTTS:
    """Three chunks per sentence, the text's bytes; counts what it was asked."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[str] = []
        self.fail = fail

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        self.asked.append(text)
        data = text.encode() * 10
        for i in range(3):
            if self.fail and i == 1:
                raise ProviderError("TTS synthesis failed", code="UNAVAILABLE", retriable=True)
            yield data[i::3]


async def audio(tts: CachingSynthesizer, text: str, options: SynthesisOptions = OPTS) -> bytes:
    return b"".join([c async for c in tts.synthesize(text, options)])


async def test_a_repeated_sentence_is_played_from_memory() -> None:
    inner = CountingTTS()
    tts = CachingSynthesizer(inner, 1 << 20)
    first = await audio(tts, "На какое время вас записать?")
    second = await audio(tts, "На какое время вас записать?")
    assert first == second
    assert inner.asked == ["На какое время вас записать?"]
    assert (tts.hits, tts.misses) == (1, 1)


async def test_other_voice_options_are_another_sentence() -> None:
    inner = CountingTTS()
    tts = CachingSynthesizer(inner, 1 << 20)
    await audio(tts, "Как вас зовут?")
    await audio(tts, "Как вас зовут?", SynthesisOptions(sample_rate=16000, voice="alena"))
    await audio(tts, "Как вас зовут?", SynthesisOptions(sample_rate=8000, voice="jane"))
    assert len(inner.asked) == 3


async def test_sentences_with_digits_are_never_kept() -> None:
    """Times, dates, phones and booking numbers differ per caller and are personal data."""
    assert not cacheable("Записываю вас на 15:30.")
    assert not cacheable("Ваш номер брони 482.")
    inner = CountingTTS()
    tts = CachingSynthesizer(inner, 1 << 20)
    for _ in range(2):
        await audio(tts, "Телефон 8 916 123-45-67, верно?")
    assert len(inner.asked) == 2 and len(tts) == 0


async def test_an_abandoned_or_failed_sentence_is_not_kept() -> None:
    inner = CountingTTS()
    tts = CachingSynthesizer(inner, 1 << 20)
    stream = tts.synthesize("Здравствуйте! Салон «Ромашка».", OPTS)
    await anext(stream)  # barge-in: the caller interrupts after the first chunk
    await stream.aclose()
    assert len(tts) == 0
    broken = CachingSynthesizer(CountingTTS(fail=True), 1 << 20)
    with pytest.raises(ProviderError):
        await audio(broken, "Здравствуйте! Салон «Ромашка».")
    assert len(broken) == 0
    await audio(tts, "Здравствуйте! Салон «Ромашка».")  # now whole: kept
    assert len(tts) == 1


async def test_the_least_recently_used_go_first_and_nothing_is_too_big() -> None:
    inner = CountingTTS()
    size = len("Вопрос а?".encode() * 10)
    tts = CachingSynthesizer(inner, size * 8)  # room for 8 sentences, each exactly 1/8
    texts = [f"Вопрос {c}?" for c in "абвгде"]
    for t in texts:
        await audio(tts, t)
    await audio(tts, texts[0])  # used again: the newest now
    for c in "жзи":  # nine in all: one must go
        await audio(tts, f"Вопрос {c}?")
    assert tts.bytes <= tts.max_bytes
    asked = len(inner.asked)
    await audio(tts, texts[0])
    assert len(inner.asked) == asked  # kept: recently used
    await audio(tts, texts[1])
    assert len(inner.asked) == asked + 1  # dropped: the least recently used
    tiny = CachingSynthesizer(CountingTTS(), 64)
    await audio(tiny, "Слишком длинное предложение для такого кэша.")
    assert len(tiny) == 0  # over an eighth of the cache: never kept


async def test_the_runtime_puts_the_cache_in_front_of_speechkit() -> None:
    """Two simulated calls on one runtime: the second call's replies without digits come
    from memory, so the emulator's SpeechKit gets fewer synthesis requests."""
    from voicebot.runtime import Runtime
    from voicebot.simulate import run_simulation

    from .engine_fixtures import engine_config, script

    cfg = engine_config()
    lines = ("Здравствуйте", "Хочу записаться на стрижку")
    runtime = await Runtime.create(cfg, force_emulator=True)
    try:
        assert isinstance(runtime.synthesizer, CachingSynthesizer)
        await run_simulation(script(*lines), cfg, speed=4.0, runtime=runtime)
        first = len(runtime.emulator.tts.requests)
        await run_simulation(script(*lines), cfg, speed=4.0, runtime=runtime)
        second = len(runtime.emulator.tts.requests) - first
    finally:
        await runtime.aclose()
    assert first > 0 and second < first
    assert runtime.synthesizer.hits >= first - second
    cfg.yandex.tts.cache_mb = 0
    runtime = await Runtime.create(cfg, force_emulator=True)
    try:
        assert not isinstance(runtime.synthesizer, CachingSynthesizer)
    finally:
        await runtime.aclose()
