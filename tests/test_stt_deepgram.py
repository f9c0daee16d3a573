"""Deepgram Live client against the local fake: mapping, quirks, errors, idle, reconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.stt_providers_fixtures import (
    call_audio,
    collect,
    feed,
    norm,
    recognize_call,
    silence,
    speech,
    utterances,
)
from voicebot.config import RecoveryPolicy
from voicebot.emulator.fake_deepgram import DeepgramFakeSettings, FakeDeepgram
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    Partial,
    ProviderError,
    RateLimitError,
    RecognitionOptions,
)
from voicebot.providers.deepgram import DeepgramSettings, DeepgramSTT
from voicebot.providers.wsstream import Reconnect
from voicebot.stt_options import StreamPolicy

__all__ = ["speech"]

KEY = "dg-test-key"
SCRIPT = ["запишите меня на стрижку", "завтра в три часа дня"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram(api_key=KEY) as f:
        yield f


def client(fake: FakeDeepgram, key: str = KEY, **policy: float) -> DeepgramSTT:
    pol = StreamPolicy(finish_timeout_s=2.0, **policy)  # type: ignore[arg-type]
    return DeepgramSTT(DeepgramSettings(url=fake.url, api_key=key, policy=pol))


def opts(rate: int = 16000, script: list[str] = SCRIPT, sid: str = "") -> RecognitionOptions:
    md = [("x-emulator-utterances-bin", json.dumps(script, ensure_ascii=False))]
    if sid:
        md.append(("x-emulator-script-id", sid))
    return RecognitionOptions(sample_rate=rate, eou_pause_ms=500, metadata=tuple(md))


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_two_utterances_finals_then_eou(fake: FakeDeepgram, speech, rate: int) -> None:
    stream = await client(fake).open_stream(opts(rate))
    audio = call_audio(speech, ["haircut", "tomorrow"], rate)
    await feed(stream, audio, rate)
    events = await collect(stream, eous=2)
    await stream.aclose()
    assert [norm(t) for t in utterances(events)] == [norm(t) for t in SCRIPT]
    # The wire carried what the protocol asks for.
    q = fake.connections[0].path
    assert "encoding=linear16" in q and f"sample_rate={rate}" in q and "language=ru" in q
    assert "interim_results=true" in q and "utterance_end_ms=1000" in q
    # Finals precede their end of utterance; partials replace and grow.
    kinds = [type(e).__name__ for e in events if not isinstance(e, Partial)]
    assert kinds == ["Final", "EndOfUtterance", "Final", "EndOfUtterance"]
    parts = [e for e in events if isinstance(e, Partial)]
    assert parts and all(norm(p.text) in norm(SCRIPT[0]) + " " + norm(SCRIPT[1]) for p in parts)
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.final_index for f in finals] == [0, 1]
    assert finals[0].words and finals[0].start_ms < finals[0].end_ms
    eous = [e for e in events if isinstance(e, EndOfUtterance)]
    assert eous[0].time_ms < eous[1].time_ms


async def test_split_finals_are_joined_into_one_utterance(speech) -> None:
    async with FakeDeepgram(
        api_key=KEY, settings=DeepgramFakeSettings(quirks=["split_final"])
    ) as fake:
        stream = await client(fake).open_stream(opts(script=["раз два три четыре пять шесть"]))
        long = speech("haircut", 16000) + speech("name", 16000)
        await feed(stream, silence(200, 16000) + long + silence(1500, 16000), 16000)
        events = await collect(stream, eous=1)
        await stream.aclose()
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 2  # two is_final pieces, one utterance
    assert utterances(events) == ["раз два три четыре пять шесть"]


async def test_noise_without_speech_final_ends_on_utterance_end(speech) -> None:
    async with FakeDeepgram(api_key=KEY, settings=DeepgramFakeSettings(quirks=["noisy"])) as fake:
        stream = await client(fake).open_stream(opts())
        await feed(stream, call_audio(speech, ["haircut"], 16000, gap_ms=2000), 16000)
        events = await collect(stream, eous=1)
        await stream.aclose()
    assert utterances(events) == [SCRIPT[0]]
    assert len(fake.connections) == 1


async def test_bad_key_is_auth_error(fake: FakeDeepgram) -> None:
    stream = await client(fake, key="wrong").open_stream(opts())
    with pytest.raises(AuthError) as ei:
        await collect(stream)
    assert ei.value.provider == "deepgram" and not ei.value.retriable
    assert "wrong" not in str(ei.value)
    assert len(fake.connections) == 0  # refused at the handshake, never retried


async def test_payment_required_is_fatal_quota(fake: FakeDeepgram) -> None:
    fake.inject("http_402")
    stream = await client(fake).open_stream(opts())
    with pytest.raises(RateLimitError) as ei:
        await collect(stream)
    assert not ei.value.retriable


async def test_drop_mid_utterance_the_call_replays_audio_no_speech_lost(
    fake: FakeDeepgram, speech
) -> None:
    fake.inject("drop", after_ms=900)  # inside the first phrase
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000)
    heard = await recognize_call(client(fake), opts(sid="call-drop"), audio, expect=2)
    assert [norm(t) for t in heard] == [norm(t) for t in SCRIPT]
    assert len(fake.connections) == 2 and fake.connections[0].closed_by == "drop"
    # The engine's recognizer replayed the first phrase onto the new stream, from its start.
    assert fake.connections[1].audio_ms >= len(audio) // 32 - 300


async def test_net0000_ends_the_stream_with_a_retriable_error(fake: FakeDeepgram, speech) -> None:
    fake.inject("net0000", after_ms=0)
    stream = await client(fake).open_stream(opts())
    await feed(stream, call_audio(speech, ["haircut"], 16000), 16000)
    with pytest.raises(ProviderError) as ei:
        await collect(stream)
    assert ei.value.retriable and ei.value.code == "NET-0000"
    assert len(fake.connections) == 1  # one connection per stream: no retries inside


async def test_the_engine_keepalive_holds_an_idle_stream(speech) -> None:
    settings = DeepgramFakeSettings(idle_timeout_s=0.4)
    async with FakeDeepgram(api_key=KEY, settings=settings) as fake:
        heard = await recognize_call(
            client(fake),
            opts(),
            call_audio(speech, ["haircut"], 16000),
            expect=1,
            idle_s=1.0,  # idle: only the recognizer's keep-alive silence flows
            policy=RecoveryPolicy(keepalive_ms=100),
        )
    assert heard == [SCRIPT[0]]
    assert len(fake.connections) == 1


async def test_idle_close_is_a_reconnect_not_a_failure(speech) -> None:
    settings = DeepgramFakeSettings(idle_timeout_s=0.3)
    async with FakeDeepgram(api_key=KEY, settings=settings) as fake:
        stream = await client(fake).open_stream(opts())
        await feed(stream, silence(200, 16000), 16000)
        with pytest.raises(Reconnect) as ei:
            await collect(stream)
        await stream.aclose()
    assert ei.value.code == "NET-0001" and ei.value.retriable
    assert fake.connections[0].closed_by == "NET-0001"


async def test_finish_sends_closestream_and_flushes_last_words(fake: FakeDeepgram, speech) -> None:
    stream = await client(fake).open_stream(opts())
    await feed(stream, silence(200, 16000) + speech("haircut", 16000), 16000)  # no trailing pause
    await stream.finish()
    events = await collect(stream)  # ends when the server closes
    assert utterances(events) == [SCRIPT[0]]
    assert fake.connections[0].closed_by == "CloseStream"
    assert any(m.get("type") == "CloseStream" for m in fake.control_messages)
