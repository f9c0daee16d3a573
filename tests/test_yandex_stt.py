"""SpeechKit STT v3: the production client against the emulator, over real gRPC on loopback,
with espeak-ng speech."""

from __future__ import annotations

import asyncio
import contextlib
import json

import grpc
import numpy as np
import pytest
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc

from tests.stt_fixtures import (
    TEST_KEY,
    KeyCheck,
    SpeechMaker,
    TokenAuth,
    collect,
    collect_until_error,
    feed,
    silence,
    speech_maker,
    stt_client,
    stt_server,
    tone,
)
from tests.stt_providers_fixtures import recognize_call
from voicebot.config import EmulatorSettings, RecoveryPolicy
from voicebot.emulator.scripts import ScriptRegistry, load_script_file
from voicebot.emulator.stt_recognition import raw_words
from voicebot.emulator.vad import EnergyVad
from voicebot.engine.recovery import Recovery
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    FinalRefinement,
    Partial,
    ProviderError,
    RecognitionEvent,
    RecognitionOptions,
    RecognitionStream,
    ReopenNow,
    SpeechRecognizer,
    StatusCode,
    StreamLimitError,
)
from voicebot.providers.yandex.stt import YandexRecognitionStream, YandexSTT

PHRASE = "Здравствуйте, я хочу записаться на стрижку."
SCRIPT_TEXT = "Здравствуйте, хочу записаться на стрижку в 15:30."


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> SpeechMaker:
    return speech_maker(tmp_path_factory.mktemp("speech"))


def script_md(*texts: str, script_id: str | None = None, quirks: str | None = None):
    md = [("x-emulator-utterances-bin", json.dumps(list(texts), ensure_ascii=False))]
    if script_id:
        md.append(("x-emulator-script-id", script_id))
    if quirks:
        md.append(("x-emulator-quirks", quirks))
    return tuple(md)


def results(events: list[RecognitionEvent]) -> list[RecognitionEvent]:
    """Finals, refinements and EOUs: the events whose order the protocol fixes."""
    return [e for e in events if isinstance(e, Final | FinalRefinement | EndOfUtterance)]


async def recognize(
    endpoint: str,
    pcm: bytes,
    rate: int,
    *,
    metadata: tuple = (),
    chunk_ms: int = 100,
    tail_silence_ms: int = 1500,
    **opts: object,
) -> list[RecognitionEvent]:
    async with stt_client(endpoint) as client:
        stream = await client.open_stream(
            RecognitionOptions(sample_rate=rate, metadata=metadata, **opts)  # type: ignore[arg-type]
        )
        await feed(stream, pcm, rate, chunk_ms)
        if tail_silence_ms:
            await stream.send_silence(tail_silence_ms)
        await stream.finish()
        return await collect(stream)


# --------------------------------------------------------------------------- event sequence


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
async def test_one_utterance_event_sequence(speech: SpeechMaker, rate: int) -> None:
    pcm = speech(PHRASE, rate)
    audio_ms = len(pcm) * 1000 // (2 * rate)
    async with stt_server() as (servicer, endpoint):
        events = await recognize(
            endpoint, pcm, rate, metadata=script_md(SCRIPT_TEXT), eou_pause_ms=700
        )
    kinds = [type(e).__name__ for e in events]
    assert isinstance(events[0], StatusCode) and events[0].code == "WORKING"
    # status keep-alives roughly once per second of audio
    assert sum(isinstance(e, StatusCode) for e in events) >= (audio_ms + 1500) // 1000

    first_final = kinds.index("Final")
    partials = [e for e in events[:first_final] if isinstance(e, Partial)]
    assert partials[0].text == ""  # utterance start
    texts = [p.text for p in partials if p.text]
    assert len(texts) >= 3
    expected_words = raw_words(SCRIPT_TEXT)
    for t in texts:  # words are revealed progressively, as prefixes of the final text
        assert expected_words[: len(t.split())] == t.split()
    assert [len(t.split()) for t in texts] == sorted(len(t.split()) for t in texts)

    seq = results(events)
    assert [type(e) for e in seq] == [Final, FinalRefinement, EndOfUtterance]
    final, refinement, eou = seq
    assert isinstance(final, Final) and isinstance(refinement, FinalRefinement)
    assert isinstance(eou, EndOfUtterance)
    assert final.text == "здравствуйте хочу записаться на стрижку в 15 30"
    assert final.final_index == 0 and refinement.final_index == 0
    assert refinement.text == SCRIPT_TEXT
    assert [w.text for w in final.words] == expected_words
    starts = [w.start_ms for w in final.words]
    assert starts == sorted(starts) and final.words[-1].end_ms == final.end_ms
    assert 0 <= final.start_ms < final.end_ms <= audio_ms
    # EOU after exactly the requested pause past the last voiced audio, in audio time
    assert eou.time_ms == final.end_ms + 700
    assert final.cursors.final_time_ms == eou.time_ms == eou.cursors.eou_time_ms
    assert eou.cursors.received_data_ms >= eou.time_ms
    # then an empty partial resets for the next utterance
    after = events[events.index(eou) + 1]
    assert isinstance(after, Partial) and after.text == ""
    # received cursor is monotonic and ends at all the audio sent
    received = [e.cursors.received_data_ms for e in events]
    assert received == sorted(received)
    assert abs(received[-1] - (audio_ms + 1500)) <= 1
    assert servicer.stats.recent[-1].status == "OK"


async def test_no_refinement_without_normalization(speech: SpeechMaker) -> None:
    pcm = speech(PHRASE, 16000)
    async with stt_server() as (_, endpoint):
        events = await recognize(
            endpoint, pcm, 16000, metadata=script_md(SCRIPT_TEXT), normalize=False
        )
    assert [type(e) for e in results(events)] == [Final, EndOfUtterance]


async def test_results_do_not_depend_on_chunking(speech: SpeechMaker) -> None:
    """Audio time, not arrival pattern, drives the emulator."""
    pcm = speech(PHRASE, 16000)
    async with stt_server() as (_, endpoint):
        a = await recognize(endpoint, pcm, 16000, metadata=script_md(PHRASE), chunk_ms=37)
        b = await recognize(endpoint, pcm, 16000, metadata=script_md(PHRASE), chunk_ms=250)
    fa, fb = results(a), results(b)
    assert [(type(e), getattr(e, "text", None)) for e in fa] == [
        (type(e), getattr(e, "text", None)) for e in fb
    ]
    assert fa[0].words == fb[0].words  # type: ignore[union-attr]
    assert fa[-1].time_ms == fb[-1].time_ms  # type: ignore[union-attr]


async def test_real_time_pace(speech: SpeechMaker) -> None:
    """~2 s of 8 kHz speech at real-time pace: partials stream while audio is still sent."""
    rate = 8000
    pcm = speech("Запишите меня завтра", rate)
    pcm = pcm[: 2 * rate * 2]  # at most 2 s
    async with stt_server() as (_, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(
            RecognitionOptions(sample_rate=rate, metadata=script_md("Запишите меня завтра."))
        )
        sending_done = asyncio.Event()
        seen: list[tuple[RecognitionEvent, bool]] = []

        async def reader() -> None:
            async for ev in stream:
                seen.append((ev, sending_done.is_set()))

        task = asyncio.create_task(reader())
        step = 2 * rate // 10
        for i in range(0, len(pcm), step):
            await stream.send_audio(pcm[i : i + step])
            await asyncio.sleep(0.1)
        sending_done.set()
        for _ in range(10):  # 1 s of silence chunks, real-time
            await stream.send_audio(silence(100, rate))
            await asyncio.sleep(0.1)
        await stream.finish()
        await asyncio.wait_for(task, 10)
    live_partials = [ev for ev, done in seen if isinstance(ev, Partial) and ev.text and not done]
    assert live_partials, "partials should arrive while speech is still being sent"
    finals = [ev for ev, _ in seen if isinstance(ev, Final)]
    assert [f.text for f in finals] == ["запишите меня завтра"]


# --------------------------------------------------------------------------- quirks


@pytest.mark.parametrize(
    ("quirk", "expected"),
    [
        (
            "double_final",
            [(Final, 0, "здравствуйте хочу записаться на"), (FinalRefinement, 0, "Здравствуйте, хочу записаться на"),
             (Final, 1, "стрижку в 15 30"), (FinalRefinement, 1, "стрижку в 15:30."),
             (EndOfUtterance, None, None)],
        ),
        (
            "empty_final",
            [(Final, 0, "здравствуйте хочу записаться на стрижку в 15 30"), (FinalRefinement, 0, SCRIPT_TEXT),
             (Final, 1, ""), (FinalRefinement, 1, ""), (EndOfUtterance, None, None)],
        ),
        (
            "eou_before_final",
            [(Final, 0, "здравствуйте хочу записаться на стрижку в 15 30"), (FinalRefinement, 0, SCRIPT_TEXT),
             (EndOfUtterance, None, None), (Final, 1, ""), (FinalRefinement, 1, "")],
        ),
    ],
)  # fmt: skip
async def test_quirks(speech: SpeechMaker, quirk: str, expected: list) -> None:
    pcm = speech(PHRASE, 16000)
    async with stt_server() as (_, endpoint):
        events = await recognize(
            endpoint, pcm, 16000, metadata=script_md(SCRIPT_TEXT, quirks=quirk)
        )
    got = [
        (type(e), getattr(e, "final_index", None), getattr(e, "text", None))
        for e in results(events)
    ]
    assert got == expected
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.cursors.final_index for f in finals] == [0, 1]
    eou = next(e for e in events if isinstance(e, EndOfUtterance))
    assert finals[-1].cursors.final_time_ms == eou.time_ms


async def test_quirks_from_settings(speech: SpeechMaker) -> None:
    pcm = speech(PHRASE, 16000)
    settings = EmulatorSettings(stt_quirks=["double_final", "empty_final"])
    async with stt_server(settings) as (_, endpoint):
        events = await recognize(
            endpoint, pcm, 16000, metadata=script_md(SCRIPT_TEXT), normalize=False
        )
    seq = results(events)
    assert [type(e) for e in seq] == [Final, Final, Final, EndOfUtterance]
    assert [e.final_index for e in seq[:3]] == [0, 1, 2]  # type: ignore[union-attr]
    assert " ".join(e.text for e in seq[:2]) == " ".join(raw_words(SCRIPT_TEXT))  # type: ignore[union-attr]
    assert seq[2].text == ""  # type: ignore[union-attr]


# --------------------------------------------------------------------------- scripts


async def test_script_exhausted_gives_empty_final_and_blips_consume_nothing(
    speech: SpeechMaker,
) -> None:
    rate = 16000
    pcm = speech(PHRASE, rate)
    gap = silence(1200, rate)
    blip = tone(60, rate)  # a click: too short to be an utterance
    audio = blip + gap + pcm + gap + pcm + gap
    async with stt_server() as (servicer, endpoint):
        events = await recognize(endpoint, audio, rate, metadata=script_md("Первая фраза."))
    finals = [e for e in events if isinstance(e, Final)]
    assert [(f.text, f.final_index) for f in finals] == [("первая фраза", 0), ("", 1)]
    assert sum(isinstance(e, EndOfUtterance) for e in events) == 2
    assert servicer.stats.recent[-1].utterances == 2


async def test_global_script_and_set_script(speech: SpeechMaker, tmp_path) -> None:
    rate = 8000
    pcm = speech(PHRASE, rate) + silence(1200, rate)
    path = tmp_path / "script.txt"
    path.write_text("Первая.\n\n  Вторая фраза  \n", encoding="utf-8")
    assert load_script_file(path) == ["Первая.", "Вторая фраза"]
    async with stt_server(EmulatorSettings(stt_script=str(path))) as (servicer, endpoint):
        events = await recognize(endpoint, pcm + pcm, rate)
        assert [e.text for e in events if isinstance(e, Final)] == ["первая", "вторая фраза"]
        servicer.set_script(["Другая"])
        events = await recognize(endpoint, pcm, rate)
        assert [e.text for e in events if isinstance(e, Final)] == ["другая"]


async def test_script_continues_across_streams_by_id(speech: SpeechMaker) -> None:
    rate = 16000
    utt = speech(PHRASE, rate) + silence(1200, rate)
    texts = ("Один.", "Два.", "Три.")
    async with stt_server() as (servicer, endpoint):
        a = await recognize(endpoint, utt, rate, metadata=script_md(*texts, script_id="call-1"))
        b = await recognize(endpoint, utt, rate, metadata=script_md(*texts, script_id="call-1"))
        other = await recognize(endpoint, utt, rate, metadata=script_md(*texts, script_id="call-2"))
        no_id = await recognize(endpoint, utt, rate, metadata=script_md(*texts))
        assert [e.text for e in a if isinstance(e, Final)] == ["один"]
        assert [e.text for e in b if isinstance(e, Final)] == ["два"]
        assert [e.text for e in other if isinstance(e, Final)] == ["один"]
        assert [e.text for e in no_id if isinstance(e, Final)] == ["один"]

        # An utterance cut off by a disconnect does not consume its text.
        async with stt_client(endpoint) as client:
            stream = await client.open_stream(
                RecognitionOptions(sample_rate=rate, metadata=script_md(*texts, script_id="call-1"))
            )
            await feed(stream, speech(PHRASE, rate)[: 2 * rate], rate)  # 1 s, no pause
            got = []
            async for ev in stream:
                got.append(ev)
                if isinstance(ev, Partial) and ev.text:
                    break
            assert got[-1].text == "три"  # type: ignore[union-attr]
            await stream.aclose()
        c = await recognize(endpoint, utt, rate, metadata=script_md(*texts, script_id="call-1"))
        assert [e.text for e in c if isinstance(e, Final)] == ["три"]
        assert [r.texts for r in servicer.stats.by_script_id("call-1")] == [
            ["Один."],
            ["Два."],
            [],
            ["Три."],
        ]


def test_script_registry_is_bounded() -> None:
    reg = ScriptRegistry(max_ids=3)
    for i in range(5):
        reg.cursor(["a", "b"], f"id{i}").consume()
    assert len(reg) == 3
    assert reg.position("id0") == 0 and reg.position("id4") == 1
    cur = reg.cursor(["a"], "id4")
    assert cur.peek() is None  # position 1 of a 1-text script: exhausted
    cur.consume()
    assert reg.position("id4") == 1


# --------------------------------------------------------------------------- VAD


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_vad_frames_and_hangover(rate: int) -> None:
    vad = EnergyVad(rate, threshold_dbfs=-40, frame_ms=20, hangover_ms=100)
    loud = tone(200, rate, amp=3000)
    quiet = tone(200, rate, amp=50)  # about -56 dBFS
    audio = silence(100, rate) + loud + quiet + silence(300, rate)
    # Fed in odd-sized pieces: frames must come out the same as in one go.
    voiced, smoothed = [], []
    for i in range(0, len(audio), 2 * 333):
        r = vad.feed(audio[i : i + 2 * 333])
        voiced.extend(r.voiced.tolist())
        smoothed.extend(r.speech.tolist())
    assert voiced == [False] * 5 + [True] * 10 + [False] * 25
    assert smoothed == [False] * 5 + [True] * 15 + [False] * 20
    assert not vad.in_speech
    vad.feed(tone(30, rate, amp=3000))  # one whole frame and half a frame carried
    assert vad.in_speech and vad.received_samples == 40 * vad.frame_samples + rate * 30 // 1000
    vad.skip(rate // 5)  # 200 ms of silence_chunk; the half frame is dropped too
    assert vad.position == vad.received_samples
    assert not vad.in_speech


def test_vad_rms_matches_numpy() -> None:
    rate = 16000
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(rate) * 200).astype("<i2")
    rms = np.sqrt((x.astype(float).reshape(-1, 320) ** 2).mean(1))
    threshold = 20 * np.log10(np.median(rms) / 32768)
    r = EnergyVad(rate, threshold_dbfs=float(threshold)).feed(x.tobytes())
    assert r.voiced.tolist() == (rms > np.median(rms)).tolist()


# --------------------------------------------------------------------------- errors


async def test_first_message_must_be_session_options() -> None:
    async with stt_server() as (_, endpoint), grpc.aio.insecure_channel(endpoint) as channel:
        stub = stt_service_pb2_grpc.RecognizerStub(channel)
        call = stub.RecognizeStreaming(metadata=[("authorization", f"Api-Key {TEST_KEY}")])
        await call.write(stt_pb2.StreamingRequest(chunk=stt_pb2.AudioChunk(data=b"\0" * 320)))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call.read()
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "session options" in (exc.value.details() or "")


@pytest.mark.parametrize("rate", [22050, 44100, 0])
async def test_bad_sample_rate(rate: int) -> None:
    async with stt_server() as (_, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(RecognitionOptions(sample_rate=rate))
        events, err = await collect_until_error(stream)
    assert events == []
    assert isinstance(err, ProviderError) and not isinstance(err, AuthError)
    assert err.code == "INVALID_ARGUMENT" and not err.retriable and err.provider == "yandex"


async def test_out_of_range_at_stream_limit(speech: SpeechMaker) -> None:
    rate = 8000
    settings = EmulatorSettings(stt_max_stream_s=2.0)
    async with stt_server(settings) as (servicer, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(RecognitionOptions(sample_rate=rate))
        await feed(stream, silence(1500, rate), rate)
        await stream.send_silence(500)  # exactly 2 s: still allowed
        with contextlib.suppress(ProviderError):
            await stream.send_audio(silence(100, rate))  # past the limit
        events, err = await collect_until_error(stream)
        with pytest.raises(StreamLimitError):  # writing to the failed stream
            await stream.send_audio(silence(100, rate))
    assert isinstance(err, StreamLimitError)
    assert err.code == "OUT_OF_RANGE" and err.retriable
    assert "Exceeded maximum allowed stream duration" in str(err)
    assert max(e.cursors.received_data_ms for e in events) == 2000
    assert servicer.stats.recent[-1].status == "OUT_OF_RANGE"


async def test_inactivity_abort() -> None:
    rate = 16000
    settings = EmulatorSettings(stt_inactivity_s=0.5)
    async with stt_server(settings) as (servicer, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(RecognitionOptions(sample_rate=rate))
        await stream.send_audio(silence(100, rate))
        events, err = await asyncio.wait_for(collect_until_error(stream), 10)
    assert isinstance(err, ProviderError)
    assert err.code == "ABORTED" and err.retriable
    assert isinstance(events[0], StatusCode)
    assert servicer.stats.recent[-1].status == "ABORTED"


async def test_bad_auth_is_a_reopen_then_an_auth_error() -> None:
    """Refused before any response: the stream invalidates the credentials and raises
    `ReopenNow`; the engine's recovery reopens at once, and a second refusal in a row
    counts as the auth error itself. The stream never retries on its own."""
    auth = TokenAuth("Api-Key wrong")
    async with stt_server() as (servicer, endpoint), stt_client(endpoint, auth) as client:
        try:  # the refusal may already meet the session options' write
            stream = await client.open_stream(RecognitionOptions())
            events, err = await collect_until_error(stream)
        except ReopenNow as e:
            events, err = [], e
    assert events == []
    assert isinstance(err, ReopenNow) and err.retriable
    assert isinstance(err.cause, AuthError)
    assert err.cause.code == "UNAUTHENTICATED" and not err.cause.retriable
    assert "wrong" not in str(err)  # the secret is not echoed
    assert auth.invalidations == 1
    assert servicer.stats.auth_failures == 1  # one call: any retry is the engine's
    assert servicer.stats.streams_opened == 0
    recovery = Recovery(RecoveryPolicy())
    assert recovery.failure(err).delay_s == 0  # reopen at once...
    assert recovery.failure(err).delay_s > 0  # ...once: then it is an auth error


async def test_reopen_once_after_unauthenticated(speech: SpeechMaker) -> None:
    """An expired token: the engine's recognizer opens a new stream with fresh
    credentials and replays the caller's audio from its own buffer."""
    rate = 16000
    pcm = speech(PHRASE, rate)
    check = KeyCheck("Bearer fresh")
    auth = TokenAuth("Bearer expired", "Bearer fresh")
    async with stt_server(auth=check) as (servicer, endpoint), stt_client(endpoint, auth) as client:
        heard = await recognize_call(
            client,
            RecognitionOptions(sample_rate=rate, normalize=False, metadata=script_md(PHRASE)),
            pcm + silence(1200, rate),
            expect=1,
        )
    assert auth.invalidations == 1
    assert check.seen == ["Bearer expired", "Bearer fresh"]
    assert servicer.stats.streams_opened == 1
    assert servicer.stats.recent[-1].received_ms >= len(pcm) * 1000 // (2 * rate)
    assert heard == [" ".join(raw_words(PHRASE))]


async def test_metadata_reaches_server() -> None:
    async with stt_server() as (servicer, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(
            RecognitionOptions(metadata=(("x-emulator-script-id", "abc"),))
        )
        await stream.finish()
        assert [type(e) for e in await collect(stream)] == [StatusCode]
        with pytest.raises(ProviderError) as exc:
            await stream.send_audio(b"\0\0")
        assert exc.value.code == "FAILED_PRECONDITION"
        record = servicer.stats.recent[-1]
    assert record.script_id == "abc"
    assert record.client_request_id == stream.request_id


async def test_bad_emulator_metadata_is_invalid_argument() -> None:
    async with stt_server() as (_, endpoint), stt_client(endpoint) as client:
        for md in (
            (("x-emulator-utterances-bin", "{not json"),),
            (("x-emulator-quirks", "triple_final"),),
        ):
            stream = await client.open_stream(RecognitionOptions(metadata=md))
            _, err = await collect_until_error(stream)
            assert isinstance(err, ProviderError) and err.code == "INVALID_ARGUMENT"


async def test_aclose_ends_iteration_quietly(speech: SpeechMaker) -> None:
    async with stt_server() as (_, endpoint), stt_client(endpoint) as client:
        stream = await client.open_stream(RecognitionOptions())
        it = aiter(stream)
        assert isinstance(await anext(it), StatusCode)
        await stream.aclose()
        assert [e async for e in it] == []
        with pytest.raises(ProviderError):
            await stream.send_audio(b"\0\0")


async def test_many_concurrent_streams(speech: SpeechMaker) -> None:
    rate = 8000
    pcm = speech(PHRASE, rate) + silence(800, rate)
    n = 40
    async with stt_server() as (servicer, endpoint), stt_client(endpoint) as client:

        async def one(i: int) -> list[str]:
            stream = await client.open_stream(
                RecognitionOptions(sample_rate=rate, metadata=script_md(f"Фраза номер {i}"))
            )
            await feed(stream, pcm, rate)
            await stream.finish()
            return [e.text for e in await collect(stream) if isinstance(e, Final)]

        got = await asyncio.gather(*(one(i) for i in range(n)))
        assert servicer.stats.streams_opened == n and servicer.stats.streams_active == 0
    assert got == [[f"фраза номер {i}"] for i in range(n)]


async def test_client_is_a_speech_recognizer() -> None:
    stt: SpeechRecognizer = YandexSTT("127.0.0.1:1", TokenAuth("x"), tls=False)  # type: ignore[arg-type]
    assert stt.name == "yandex"
    assert issubclass(YandexRecognitionStream, RecognitionStream)
    await stt.aclose()  # type: ignore[attr-defined]


async def test_through_the_emulator_with_api_key(speech: SpeechMaker) -> None:
    """Wired as in production: the `Emulator` serves this servicer; ApiKeyAuth on the client."""
    from tests.emulator_fixtures import TEST_API_KEY, start_emulator
    from voicebot.providers.yandex.auth import ApiKeyAuth

    rate = 16000
    pcm = speech(PHRASE, rate) + silence(1000, rate)
    async with start_emulator() as emu:
        emu.stt.set_script(["Запишите меня."])
        for key, expected in ((TEST_API_KEY, None), ("other-key", AuthError)):
            stt = YandexSTT(emu.stt_endpoint, ApiKeyAuth(key), tls=False)
            try:
                stream = await stt.open_stream(RecognitionOptions(sample_rate=rate))
                write_err: ProviderError | None = None
                try:  # a refused stream fails the writer too
                    await feed(stream, pcm, rate)
                    await stream.finish()
                except ProviderError as e:
                    write_err = e
                events, err = await collect_until_error(stream)
                if expected is not None:
                    # Refused before any response: a new stream may pass (ReopenNow);
                    # the engine's one reopen then sees the real refusal.
                    assert isinstance(err, ReopenNow)
                    assert write_err is None or isinstance(write_err, ReopenNow)
                    with pytest.raises(expected):
                        again = await stt.open_stream(RecognitionOptions(sample_rate=rate))
                        # A write may meet the refusal first (grpc-aio masks it as a local
                        # INTERNAL); the reader still gets the server's own status.
                        with contextlib.suppress(ProviderError):
                            await feed(again, pcm, rate)
                        _, again_err = await collect_until_error(again)
                        assert again_err is not None
                        raise again_err
            finally:
                await stt.aclose()
            if expected is None:
                assert err is None and write_err is None
                assert [e.text for e in events if isinstance(e, Final)] == ["запишите меня"]
