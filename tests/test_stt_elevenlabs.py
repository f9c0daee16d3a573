"""ElevenLabs Scribe Realtime client against the local fake."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import pytest

from tests.stt_providers_fixtures import (
    call_audio,
    collect,
    feed,
    recognize_call,
    silence,
    speech,
    utterances,
)
from voicebot.config import RecoveryPolicy
from voicebot.emulator.fake_elevenlabs import ElevenLabsFakeSettings, FakeElevenLabs
from voicebot.providers.base import (
    AuthError,
    Final,
    Partial,
    ProviderError,
    RateLimitError,
    RecognitionOptions,
)
from voicebot.providers.elevenlabs import ElevenLabsSettings, ElevenLabsSTT, map_error
from voicebot.providers.wsstream import Reconnect
from voicebot.stt_options import StreamPolicy

__all__ = ["speech"]

KEY = "xi-test-key"
SCRIPT = ["запишите меня на стрижку", "завтра в три часа дня"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(api_key=KEY) as f:
        yield f


def client(
    fake: FakeElevenLabs, key: str = KEY, *, policy: dict | None = None, **kw: object
) -> ElevenLabsSTT:
    pol = StreamPolicy(**{"finish_timeout_s": 2.0, **(policy or {})})
    return ElevenLabsSTT(ElevenLabsSettings(url=fake.url, api_key=key, policy=pol, **kw))  # type: ignore[arg-type]


def opts(rate: int = 16000, script: list[str] = SCRIPT, sid: str = "") -> RecognitionOptions:
    md = [("x-emulator-utterances-bin", json.dumps(script, ensure_ascii=False))]
    if sid:
        md.append(("x-emulator-script-id", sid))
    return RecognitionOptions(sample_rate=rate, eou_pause_ms=500, metadata=tuple(md))


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_vad_commits_become_final_and_eou(fake: FakeElevenLabs, speech, rate: int) -> None:
    stream = await client(fake).open_stream(opts(rate))
    await feed(stream, call_audio(speech, ["haircut", "tomorrow"], rate, gap_ms=2500), rate)
    events = await collect(stream, eous=2)
    await stream.aclose()
    assert utterances(events) == SCRIPT
    q = fake.connections[0].path
    assert (
        f"audio_format=pcm_{rate}" in q and "commit_strategy=vad" in q and "language_code=ru" in q
    )
    assert "vad_silence_threshold_secs=0.5" in q and "include_timestamps=true" in q
    assert fake.connections[0].headers["xi-api-key"] == KEY
    assert all(c["sample_rate"] == rate and c["commit"] is False for c in fake.chunks)
    # One final per commit although each commit arrived twice (plain + timestamped twin).
    kinds = [type(e).__name__ for e in events if not isinstance(e, Partial)]
    assert kinds == ["Final", "EndOfUtterance", "Final", "EndOfUtterance"]
    finals = [e for e in events if isinstance(e, Final)]
    assert [w.text for w in finals[1].words] == SCRIPT[1].split()  # from the timestamped twin
    assert finals[0].end_ms < finals[1].start_ms
    # Repeated partials and post-commit echoes were dropped.
    parts = [e.text for e in events if isinstance(e, Partial)]
    assert parts and all(a != b for a, b in itertools.pairwise(parts))
    after_first = [type(e).__name__ for e in events[events.index(finals[0]) :]]
    assert after_first[:2] == ["Final", "EndOfUtterance"]
    assert not any(
        isinstance(e, Partial) and e.text == SCRIPT[0] for e in events[events.index(finals[0]) :]
    )


async def test_twins_out_of_order_still_one_final(speech) -> None:
    async with FakeElevenLabs(
        api_key=KEY, settings=ElevenLabsFakeSettings(quirks=["twins_reversed"])
    ) as fake:
        stream = await client(fake).open_stream(opts())
        await feed(stream, call_audio(speech, ["haircut", "tomorrow"], 16000, gap_ms=2500), 16000)
        events = await collect(stream, eous=2)
        await asyncio.sleep(0.4)  # a stray plain twin would surface now
        await stream.aclose()
    assert utterances(events) == SCRIPT
    assert sum(isinstance(e, Final) for e in events) == 2


async def test_without_timestamps_plain_commit_is_used(fake: FakeElevenLabs, speech) -> None:
    stream = await client(fake, include_timestamps=False).open_stream(opts())
    await feed(stream, call_audio(speech, ["haircut"], 16000, gap_ms=2500), 16000)
    events = await collect(stream, eous=1)
    await stream.aclose()
    assert utterances(events) == [SCRIPT[0]]
    assert "include_timestamps=false" in fake.connections[0].path


async def test_manual_commit_on_finish_is_padded(fake: FakeElevenLabs, speech) -> None:
    stream = await client(fake, commit_strategy="manual").open_stream(opts())
    await feed(stream, silence(100, 16000) + speech("haircut", 16000), 16000)
    await stream.finish()
    events = await collect(stream)
    assert utterances(events) == [SCRIPT[0]]
    assert [c["commit"] for c in fake.chunks].count(True) == 1
    assert fake.connections[0].closed_by == ""  # the client closed after the answer


async def test_short_manual_commit_is_padded_not_throttled(fake: FakeElevenLabs) -> None:
    stream = await client(fake, commit_strategy="manual").open_stream(opts(script=["да"]))
    await stream.send_audio(silence(50, 16000))
    await stream.commit()  # 50 ms of audio: the client pads to >= 0.3 s
    await asyncio.sleep(0.3)
    await stream.aclose()
    assert [c["commit"] for c in fake.chunks].count(True) == 1
    assert fake.connections[0].closed_by != "commit_throttled"


async def test_commit_throttled_from_a_raw_client(fake: FakeElevenLabs) -> None:
    import base64

    from websockets.asyncio.client import connect

    async with connect(
        f"{fake.url}?model_id=scribe_v2_realtime", additional_headers=[("xi-api-key", KEY)]
    ) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
        await ws.send(
            json.dumps(
                {
                    "message_type": "input_audio_chunk",
                    "commit": True,
                    "sample_rate": 16000,
                    "audio_base_64": base64.b64encode(silence(20, 16000)).decode(),
                }
            )
        )
        err = json.loads(await ws.recv())
        await ws.wait_closed()
    assert err["message_type"] == "commit_throttled"
    assert ws.close_code == 1000 and ws.close_reason == "commit_throttled"


async def test_bad_key_after_upgrade_is_auth_error(fake: FakeElevenLabs) -> None:
    stream = await client(fake, key="bad").open_stream(opts())
    with pytest.raises(AuthError) as ei:
        await collect(stream)
    assert ei.value.code == "auth_error" and not ei.value.retriable
    assert len(fake.connections) == 1 and fake.connections[0].closed_by == "auth_error"


async def test_http_401_on_upgrade_is_auth_error(fake: FakeElevenLabs) -> None:
    fake.inject("http_401")
    stream = await client(fake).open_stream(opts())
    with pytest.raises(AuthError):
        await collect(stream)


async def test_invalid_request_is_not_retried(fake: FakeElevenLabs) -> None:
    stream = await client(fake, vad_silence_threshold_secs=0.3, vad_threshold=0.95).open_stream(
        opts()
    )
    with pytest.raises(ProviderError) as ei:
        await collect(stream)
    assert ei.value.code == "invalid_request" and not ei.value.retriable


@pytest.mark.parametrize(
    ("kind", "cls", "retriable"),
    [
        ("auth_error", AuthError, False),
        ("unaccepted_terms", AuthError, False),
        ("quota_exceeded", RateLimitError, False),
        ("rate_limited", RateLimitError, True),
        ("queue_overflow", RateLimitError, True),
        ("resource_exhausted", RateLimitError, True),
        ("session_time_limit_exceeded", Reconnect, True),
        ("insufficient_audio_activity", Reconnect, True),
        ("input_error", ProviderError, False),
        ("chunk_size_exceeded", ProviderError, False),
        ("invalid_request", ProviderError, False),
        ("commit_throttled", ProviderError, True),
        ("error", ProviderError, True),
    ],
)
def test_every_error_type_is_mapped(kind: str, cls: type, retriable: bool) -> None:
    e = map_error(kind, "x")
    assert type(e) is cls and e.retriable is retriable and e.code == kind


async def test_quota_exceeded_mid_stream_is_fatal(fake: FakeElevenLabs, speech) -> None:
    fake.inject("error:quota_exceeded", after_ms=500)
    stream = await client(fake).open_stream(opts())
    await feed(stream, call_audio(speech, ["haircut"], 16000), 16000)
    with pytest.raises(RateLimitError) as ei:
        await collect(stream)
    assert ei.value.code == "quota_exceeded" and not ei.value.retriable
    assert len(fake.connections) == 1


async def test_session_time_limit_rolls_over_and_keeps_speech(speech) -> None:
    async with FakeElevenLabs(api_key=KEY) as fake:
        fake.inject("error:session_time_limit_exceeded", after_ms=900)  # mid-phrase
        heard = await recognize_call(
            client(fake),
            opts(sid="roll"),
            call_audio(speech, ["haircut"], 16000, gap_ms=2500),
            expect=1,
        )
    assert heard == [SCRIPT[0]]
    assert fake.connections[0].closed_by == "session_time_limit_exceeded"
    assert len(fake.connections) == 2


async def test_drop_the_call_replays_unfinalized_audio(fake: FakeElevenLabs, speech) -> None:
    fake.inject("drop", after_ms=1000)
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000, gap_ms=2500)
    heard = await recognize_call(client(fake), opts(sid="drop"), audio, expect=2)
    assert heard == SCRIPT
    assert fake.connections[0].closed_by == "drop"
    assert fake.connections[1].audio_ms >= len(audio) // 32 - 1000 - 50


async def test_engine_silence_keepalive_holds_session(speech) -> None:
    async with FakeElevenLabs(
        api_key=KEY, settings=ElevenLabsFakeSettings(idle_timeout_s=0.4)
    ) as fake:
        heard = await recognize_call(
            client(fake),
            opts(),
            call_audio(speech, ["haircut"], 16000, gap_ms=2500),
            expect=1,
            idle_s=1.0,
            policy=RecoveryPolicy(keepalive_ms=100),
        )
    assert heard == [SCRIPT[0]]
    assert len(fake.connections) == 1


async def test_idle_close_is_a_reconnect(speech) -> None:
    async with FakeElevenLabs(
        api_key=KEY, settings=ElevenLabsFakeSettings(idle_timeout_s=0.3)
    ) as fake:
        stream = await client(fake).open_stream(opts())
        await feed(stream, silence(200, 16000), 16000)
        with pytest.raises(Reconnect) as ei:
            await collect(stream)
        await stream.aclose()
    assert ei.value.retriable and fake.connections[0].closed_by == "idle"
    assert len(fake.connections) == 1


async def test_single_use_token_is_consumed(fake: FakeElevenLabs) -> None:
    from websockets.asyncio.client import connect

    tok = fake.mint_token()
    url = f"{fake.url}?model_id=scribe_v2_realtime&token={tok}"
    async with connect(url) as ws:
        assert json.loads(await ws.recv())["message_type"] == "session_started"
    async with connect(url) as ws:
        assert json.loads(await ws.recv())["message_type"] == "auth_error"
        await ws.wait_closed()
    assert ws.close_code == 1000


async def test_after_a_drop_only_audio_after_the_last_utterance_is_replayed(
    fake: FakeElevenLabs, speech
) -> None:
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000, gap_ms=2500)
    first_end = 300 + len(speech("haircut", 16000)) // 32 + 2000
    fake.inject("drop", after_ms=first_end)  # after the first commit, before the second phrase
    heard = await recognize_call(client(fake), opts(sid="ctx"), audio, expect=2)
    assert heard == SCRIPT
    # Only audio after the committed words was replayed (not the lead-in nor the phrase).
    assert fake.connections[1].audio_ms < len(audio) // 32 - 1300
