"""YandexTTS against the emulator's SpeechKit TTS v3 over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import re
import struct

import grpc
import numpy as np
import pytest
from yandex.cloud.ai.tts.v3 import tts_pb2, tts_service_pb2_grpc

from tests.emulator_fixtures import emulator  # noqa: F401  (fixture)
from voicebot.emulator import Emulator
from voicebot.providers.base import AuthError, ProviderError, SynthesisOptions
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.tts import MAX_CHARS, YandexTTS, split_text

PHRASE = "Здравствуйте! Вы позвонили в салон красоты. Чем могу помочь?"


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def client(emu: Emulator, key: str | None = None) -> YandexTTS:
    return YandexTTS(emu.tts_endpoint, ApiKeyAuth(key or emu.api_key), tls=False)


async def collect(tts: YandexTTS, text: str, options: SynthesisOptions) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text, options)]


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_real_speech_streamed_in_chunks(emulator: Emulator, rate: int) -> None:  # noqa: F811
    tts = client(emulator)
    try:
        chunks = await collect(tts, PHRASE, SynthesisOptions(sample_rate=rate, voice="alena"))
    finally:
        await tts.aclose()
    pcm = b"".join(chunks)
    assert not pcm.startswith(b"RIFF"), "raw PCM expected, no WAV header"
    assert len(pcm) % 2 == 0
    duration = len(pcm) / 2 / rate
    # espeak-ng speaks Russian at roughly 10-20 characters a second.
    assert len(PHRASE) / 25 < duration < len(PHRASE) / 6
    assert rms(pcm) > 300, "speech, not silence"
    # Speech has pauses and loud parts: frame energies must vary a lot.
    frame = rate // 50
    energies = [rms(pcm[i : i + 2 * frame]) for i in range(0, len(pcm) - 2 * frame, 2 * frame)]
    assert max(energies) > 10 * (min(energies) + 1)
    assert len(chunks) >= 5
    chunk_bytes = rate * 2 * emulator.settings.tts_chunk_ms // 1000
    assert all(len(c) == chunk_bytes for c in chunks[:-1])
    seen = emulator.tts.requests[-1]
    assert (seen.sample_rate, seen.container, seen.voice, seen.outcome) == (
        rate,
        "raw",
        "alena",
        "OK",
    )
    assert seen.client_request_id


async def test_sample_rates_give_same_duration(emulator: Emulator) -> None:  # noqa: F811
    """Real resampling, not a relabelled stream: the duration does not depend on rate."""
    tts = client(emulator)
    try:
        durations = {}
        for rate in (8000, 16000, 48000):
            pcm = b"".join(await collect(tts, PHRASE, SynthesisOptions(sample_rate=rate)))
            durations[rate] = len(pcm) / 2 / rate
    finally:
        await tts.aclose()
    assert max(durations.values()) - min(durations.values()) < 0.01
    # The same phrase three times: espeak-ng ran once, the cache served the rest.
    assert emulator.tts.synth.subprocess_runs == 1


async def test_long_text_split_at_sentences(emulator: Emulator) -> None:  # noqa: F811
    sentences = [
        "Мы работаем каждый день с девяти утра до девяти вечера.",
        "Стрижка стоит полторы тысячи рублей и занимает полчаса.",
        "Стрижка с бородой стоит две тысячи двести рублей.",
        "Укладка стоит тысячу рублей и занимает двадцать минут.",
        "У нас работают три мастера: Иван, Петр и Сергей.",
        "Наш адрес: Москва, улица Пушкина, дом десять.",
        "Скажите, на какое время вас записать?",
    ]
    text = " ".join(sentences)
    assert 330 < len(text) < 450
    tts = client(emulator)
    try:
        pcm = b"".join(await collect(tts, text, SynthesisOptions(sample_rate=8000)))
    finally:
        await tts.aclose()
    seen = [r.text for r in emulator.tts.requests if r.outcome == "OK"]
    assert len(seen) >= 2
    assert all(len(t) <= MAX_CHARS for t in seen)
    assert " ".join(seen) == text, "pieces cover the text, in order"
    assert all(t.endswith((".", "?")) for t in seen), "cut at sentence ends"
    assert len(pcm) / 2 / 8000 > len(text) / 25


def test_split_text_falls_back_to_words_and_hard_cuts() -> None:
    words = ["слово"] * 80  # one 479-character "sentence" without punctuation
    pieces = split_text(" ".join(words))
    assert len(pieces) == 2 and all(len(p) <= MAX_CHARS for p in pieces)
    assert " ".join(pieces) == " ".join(words)
    assert all(re.fullmatch(r"(слово ?)+", p) for p in pieces)
    giant = "а" * 600
    assert [len(p) for p in split_text(giant)] == [250, 250, 100]
    assert split_text("  короткий   текст ") == ["короткий текст"]
    assert split_text("   ") == []


async def test_hints_each_in_own_element_and_speed_changes_audio(emulator: Emulator) -> None:  # noqa: F811
    tts = client(emulator)
    try:
        req = tts.request_for("x", SynthesisOptions(voice="jane", role="evil", speed=1.5))
        assert [h.WhichOneof("Hint") for h in req.hints] == ["voice", "role", "speed"]
        assert req.loudness_normalization_type == tts_pb2.UtteranceSynthesisRequest.LUFS
        slow = b"".join(await collect(tts, PHRASE, SynthesisOptions(voice="jane", role="evil")))
        fast = b"".join(
            await collect(tts, PHRASE, SynthesisOptions(voice="jane", role="evil", speed=2.0))
        )
    finally:
        await tts.aclose()
    assert len(fast) < 0.8 * len(slow)
    seen = emulator.tts.requests[-1]
    assert (seen.voice, seen.role, seen.speed) == ("jane", "evil", 2.0)


@pytest.mark.parametrize(
    ("voice", "role"), [("zinaida", None), ("alena", "evil"), ("filipp", "good")]
)
async def test_unknown_voice_or_role_is_invalid_argument(
    emulator: Emulator,  # noqa: F811
    voice: str,
    role: str | None,
) -> None:
    tts = client(emulator)
    try:
        with pytest.raises(ProviderError) as err:
            await collect(tts, "Привет", SynthesisOptions(voice=voice, role=role))
    finally:
        await tts.aclose()
    assert err.value.code == "INVALID_ARGUMENT"
    assert not err.value.retriable
    assert not isinstance(err.value, AuthError)


async def test_bad_key_is_auth_error(emulator: Emulator) -> None:  # noqa: F811
    tts = client(emulator, key="wrong-key")
    try:
        with pytest.raises(AuthError) as err:
            await collect(tts, "Привет", SynthesisOptions())
    finally:
        await tts.aclose()
    assert err.value.code == "UNAUTHENTICATED"
    assert "wrong-key" not in str(err.value)
    assert emulator.tts.requests == []


class FlakyAuth:
    """First credentials are stale; after invalidate() good ones come."""

    def __init__(self, good: str) -> None:
        self.good = good
        self.invalidations = 0

    async def headers(self) -> list[tuple[str, str]]:
        key = self.good if self.invalidations else "stale"
        return [("authorization", f"Api-Key {key}")]

    async def invalidate(self) -> None:
        self.invalidations += 1

    async def aclose(self) -> None:
        return None


async def test_unauthenticated_invalidates_and_retries_once(emulator: Emulator) -> None:  # noqa: F811
    auth = FlakyAuth(emulator.api_key)
    tts = YandexTTS(emulator.tts_endpoint, auth, tls=False)
    try:
        pcm = b"".join(await collect(tts, "Добрый день", SynthesisOptions(sample_rate=8000)))
    finally:
        await tts.aclose()
    assert auth.invalidations == 1
    assert rms(pcm) > 300


async def test_injected_unavailable_is_retriable(emulator: Emulator) -> None:  # noqa: F811
    tts = client(emulator)
    try:
        # One transient failure before any audio: retried at once, the sentence plays.
        emulator.tts.inject("UNAVAILABLE")
        n = len(emulator.tts.requests)
        assert rms(b"".join(await collect(tts, "Привет", SynthesisOptions()))) > 300
        assert len(emulator.tts.requests) == n + 2
        # Twice in a row: the retriable error reaches the caller.
        emulator.tts.inject("UNAVAILABLE", "UNAVAILABLE")
        with pytest.raises(ProviderError) as err:
            await collect(tts, "Привет", SynthesisOptions())
        assert err.value.retriable and err.value.code == "UNAVAILABLE"
        # The fault was one-shot: the next call works.
        assert await collect(tts, "Привет", SynthesisOptions())
    finally:
        await tts.aclose()


# ---------------------------------------------------------------- emulator wire checks


async def raw_call(
    emu: Emulator, request: tts_pb2.UtteranceSynthesisRequest
) -> list[tts_pb2.UtteranceSynthesisResponse]:
    async with grpc.aio.insecure_channel(emu.tts_endpoint) as channel:
        stub = tts_service_pb2_grpc.SynthesizerStub(channel)
        call = stub.UtteranceSynthesis(
            request, metadata=[("authorization", f"API-KEY {emu.api_key}")]
        )
        return [r async for r in call]


async def test_emulator_limits_text_to_250_chars_unless_unsafe(emulator: Emulator) -> None:  # noqa: F811
    text = "Это предложение повторяется много раз. " * 8
    assert len(text) > 250
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_call(emulator, tts_pb2.UtteranceSynthesisRequest(text=text))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = await raw_call(emulator, tts_pb2.UtteranceSynthesisRequest(text=text, unsafe_mode=True))
    assert ok


async def test_emulator_default_output_is_wav_22050(emulator: Emulator) -> None:  # noqa: F811
    responses = await raw_call(emulator, tts_pb2.UtteranceSynthesisRequest(text="Проверка"))
    data = b"".join(r.audio_chunk.data for r in responses)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    rate = struct.unpack_from("<I", data, 24)[0]
    data_size = struct.unpack_from("<I", data, 40)[0]
    assert rate == 22050
    assert data_size == len(data) - 44
    assert responses[0].text_chunk.text == "Проверка"
    assert [r.start_ms for r in responses] == sorted(r.start_ms for r in responses)


async def test_emulator_rejects_bad_sample_rate(emulator: Emulator) -> None:  # noqa: F811
    request = tts_pb2.UtteranceSynthesisRequest(
        text="Проверка",
        output_audio_spec=tts_pb2.AudioFormatOptions(
            raw_audio=tts_pb2.RawAudio(
                audio_encoding=tts_pb2.RawAudio.LINEAR16_PCM, sample_rate_hertz=96000
            )
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_call(emulator, request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_concurrent_same_phrase_runs_espeak_once(emulator: Emulator) -> None:  # noqa: F811
    tts = client(emulator)
    try:
        results = await asyncio.gather(
            *(
                collect(tts, "Одну минуту, проверяю расписание.", SynthesisOptions())
                for _ in range(6)
            )
        )
    finally:
        await tts.aclose()
    pcms = {b"".join(r) for r in results}
    assert len(pcms) == 1 and rms(pcms.pop()) > 300
    assert emulator.tts.synth.subprocess_runs == 1


async def test_emulator_stream_synthesis(emulator: Emulator) -> None:  # noqa: F811
    options = tts_pb2.SynthesisOptions(
        voice="kirill",
        role="strict",
        output_audio_spec=tts_pb2.AudioFormatOptions(
            raw_audio=tts_pb2.RawAudio(
                audio_encoding=tts_pb2.RawAudio.LINEAR16_PCM, sample_rate_hertz=16000
            )
        ),
    )
    parts = ["Добрый ", "день. ", "Запишу вас ", "на завтра"]

    async def requests():  # type: ignore[no-untyped-def]
        yield tts_pb2.StreamSynthesisRequest(options=options)
        for part in parts:
            yield tts_pb2.StreamSynthesisRequest(synthesis_input=tts_pb2.SynthesisInput(text=part))

    async with grpc.aio.insecure_channel(emulator.tts_endpoint) as channel:
        stub = tts_service_pb2_grpc.SynthesizerStub(channel)
        call = stub.StreamSynthesis(
            requests(), metadata=[("authorization", f"Api-Key {emulator.api_key}")]
        )
        responses = [r async for r in call]
    texts = [r.text_chunk.text for r in responses if r.text_chunk.text]
    assert texts == ["Добрый день.", "Запишу вас на завтра"]
    pcm = b"".join(r.audio_chunk.data for r in responses)
    assert rms(pcm) > 300 and len(pcm) / 32000 > 1.0
    starts = [r.start_ms for r in responses]
    assert starts == sorted(starts)
    assert [r.voice for r in emulator.tts.requests] == ["kirill", "kirill"]
