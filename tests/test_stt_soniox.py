"""Soniox RT client against the local fake: tokens, <end>/<fin>, errors, idle, reconnect."""

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
from voicebot.emulator.fake_soniox import FakeSoniox, SonioxFakeSettings
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    Partial,
    ProviderError,
    RecognitionOptions,
)
from voicebot.providers.soniox import SonioxSettings, SonioxSTT
from voicebot.providers.wsstream import Reconnect
from voicebot.stt_options import StreamPolicy

__all__ = ["speech"]

KEY = "sx-test-key"
SCRIPT = ["запишите меня на стрижку", "завтра в три часа дня"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSoniox]:
    async with FakeSoniox(api_key=KEY) as f:
        yield f


def client(fake: FakeSoniox, key: str = KEY, **policy: float) -> SonioxSTT:
    pol = StreamPolicy(finish_timeout_s=2.0, **policy)  # type: ignore[arg-type]
    return SonioxSTT(SonioxSettings(url=fake.url, api_key=key, policy=pol))


def opts(rate: int = 16000, script: list[str] = SCRIPT, sid: str = "") -> RecognitionOptions:
    md = [("x-emulator-utterances-bin", json.dumps(script, ensure_ascii=False))]
    if sid:
        md.append(("x-emulator-script-id", sid))
    return RecognitionOptions(sample_rate=rate, eou_pause_ms=500, metadata=tuple(md))


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_tokens_become_one_final_per_endpoint(fake: FakeSoniox, speech, rate: int) -> None:
    stream = await client(fake).open_stream(opts(rate))
    await feed(stream, call_audio(speech, ["haircut", "tomorrow"], rate), rate)
    events = await collect(stream, eous=2)
    await stream.aclose()
    assert utterances(events) == SCRIPT
    cfg = fake.configs[0]
    assert (
        cfg["sample_rate"] == rate
        and cfg["audio_format"] == "pcm_s16le"
        and cfg["num_channels"] == 1
    )
    assert cfg["language_hints"] == ["ru"] and cfg["enable_endpoint_detection"] is True
    assert "api_key" not in cfg  # Bearer header only; the config key is deprecated
    assert fake.connections[0].headers["authorization"] == f"Bearer {KEY}"
    kinds = [type(e).__name__ for e in events if not isinstance(e, Partial)]
    assert kinds == ["Final", "EndOfUtterance", "Final", "EndOfUtterance"]
    finals = [e for e in events if isinstance(e, Final)]
    assert "<end>" not in finals[0].text and [w.text for w in finals[0].words] == SCRIPT[0].split()
    parts = [e.text for e in events if isinstance(e, Partial)]
    assert parts and all(a != b for a, b in itertools.pairwise(parts))  # no repeats
    assert all(SCRIPT[0].startswith(p) or SCRIPT[1].startswith(p) for p in parts)


async def test_finalize_gives_fin_and_an_utterance(fake: FakeSoniox, speech) -> None:
    stream = await client(fake).open_stream(opts())
    await feed(stream, silence(200, 16000) + speech("haircut", 16000), 16000)
    await asyncio.sleep(0.2)
    await stream.finalize()
    events = await collect(stream, eous=1)
    await stream.aclose()
    assert utterances(events) == [SCRIPT[0]]
    assert {"type": "finalize"} in fake.control_messages


async def test_empty_frame_ends_stream_with_finished(fake: FakeSoniox, speech) -> None:
    stream = await client(fake).open_stream(opts())
    await feed(stream, silence(200, 16000) + speech("haircut", 16000), 16000)  # no pause
    await stream.finish()
    events = await collect(stream)
    assert utterances(events) == [SCRIPT[0]]
    assert fake.connections[0].closed_by == "finished"
    assert isinstance(events[-1], EndOfUtterance)


async def test_bad_key_is_auth_error_not_retried(fake: FakeSoniox) -> None:
    stream = await client(fake, key="nope").open_stream(opts())
    with pytest.raises(AuthError) as ei:
        await collect(stream)
    assert ei.value.code == "401" and not ei.value.retriable and "nope" not in str(ei.value)
    assert len(fake.connections) == 1


async def test_503_the_call_restarts_and_replays(fake: FakeSoniox, speech) -> None:
    fake.inject("503", after_ms=900)
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000)
    heard = await recognize_call(client(fake), opts(sid="c503"), audio, expect=2)
    assert heard == SCRIPT
    assert len(fake.connections) == 2 and fake.connections[0].closed_by == "503"
    assert fake.connections[1].audio_ms > len(audio) // 32 - 900  # the cut phrase was replayed


async def test_abrupt_drop_between_utterances(fake: FakeSoniox, speech) -> None:
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000)
    fake.inject("drop", after_ms=len(audio) // 32 - len(speech("tomorrow", 16000)) // 32 - 1200)
    heard = await recognize_call(client(fake), opts(sid="cdrop"), audio, expect=2)
    assert heard == SCRIPT
    # The first phrase had ended before the drop, so the call did not send it again.
    assert fake.connections[1].audio_ms < len(audio) // 32 - len(speech("haircut", 16000)) // 32


async def test_engine_keepalive_holds_and_idle_close_is_a_reconnect(speech) -> None:
    async with FakeSoniox(api_key=KEY, settings=SonioxFakeSettings(idle_timeout_s=0.4)) as fake:
        heard = await recognize_call(
            client(fake),
            opts(script=[SCRIPT[1]]),
            call_audio(speech, ["tomorrow"], 16000),
            expect=1,
            idle_s=1.0,
            policy=RecoveryPolicy(keepalive_ms=100),
        )
        assert heard == [SCRIPT[1]]
        assert len(fake.connections) == 1 and fake.connections[0].closed_by != "408"
        # Nothing flowing: the server closes with an error, a reconnect for the engine.
        stream = await client(fake).open_stream(opts())
        await feed(stream, silence(200, 16000), 16000)
        with pytest.raises(Reconnect) as ei:
            await collect(stream)
        await stream.aclose()
    assert ei.value.retriable and fake.connections[1].closed_by == "408"


async def test_config_must_come_first(fake: FakeSoniox) -> None:
    from websockets.asyncio.client import connect

    async with connect(fake.url, additional_headers=[("Authorization", f"Bearer {KEY}")]) as ws:
        await ws.send(b"\x00\x00" * 160)
        reply = json.loads(await ws.recv())
    assert reply["error_code"] == 400


async def test_a_server_error_ends_the_stream_retriable(fake: FakeSoniox, speech) -> None:
    fake.fail_all("http_500")
    stream = await client(fake).open_stream(opts())
    await feed(stream, call_audio(speech, ["haircut"], 16000), 16000)
    with pytest.raises(ProviderError) as ei:
        await collect(stream)
    assert ei.value.retriable and ei.value.code == "HTTP_500"
    assert len(fake.connections) <= 1  # no retries inside the stream: the engine decides
