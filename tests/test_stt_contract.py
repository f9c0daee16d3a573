"""The provider contract: the same cases against every SpeechRecognizer.

In the spirit of TEN's ASR guarders: whatever the vendor, the engine gets Final(s) then
one EndOfUtterance per utterance, times on the stream's own clock, a clean end after
finish(), ProviderError subclasses for failures, and the offline transcript-script
mechanism. Yandex runs on the in-process SpeechKit emulator, the others on their local
fakes. A new provider joins by adding a harness to HARNESSES.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stt_providers_fixtures import call_audio, collect, feed, silence, speech, utterances
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    ProviderError,
    RecognitionOptions,
    ReopenNow,
    SpeechRecognizer,
)
from voicebot.stt_options import StreamPolicy

__all__ = ["speech"]

REPO = Path(__file__).resolve().parent.parent
KEY = "contract-test-key"
SCRIPT = ["запишите меня на стрижку", "завтра в три часа дня"]
POLICY = StreamPolicy(finish_timeout_s=3.0)


@dataclass
class Harness:
    name: str
    make: Callable[[str], SpeechRecognizer]  # api key -> recognizer

    async def close(self, *recs: Any) -> None:
        for r in recs:
            close = getattr(r, "aclose", None)
            if close is not None:
                await close()


@asynccontextmanager
async def yandex_harness() -> AsyncIterator[Harness]:
    from tests.emulator_fixtures import start_emulator
    from voicebot.providers.yandex.auth import ApiKeyAuth
    from voicebot.providers.yandex.stt import YandexSTT

    async with start_emulator(api_key=KEY) as emu:
        yield Harness("yandex", lambda key: YandexSTT(emu.stt_endpoint, ApiKeyAuth(key), tls=False))


@asynccontextmanager
async def elevenlabs_harness() -> AsyncIterator[Harness]:
    from voicebot.emulator.fake_elevenlabs import FakeElevenLabs
    from voicebot.providers.elevenlabs import ElevenLabsSettings, ElevenLabsSTT

    async with FakeElevenLabs(api_key=KEY) as fake:
        yield Harness(
            "elevenlabs",
            lambda key: ElevenLabsSTT(ElevenLabsSettings(url=fake.url, api_key=key, policy=POLICY)),
        )


@asynccontextmanager
async def deepgram_harness() -> AsyncIterator[Harness]:
    from voicebot.emulator.fake_deepgram import FakeDeepgram
    from voicebot.providers.deepgram import DeepgramSettings, DeepgramSTT

    async with FakeDeepgram(api_key=KEY) as fake:
        yield Harness(
            "deepgram",
            lambda key: DeepgramSTT(DeepgramSettings(url=fake.url, api_key=key, policy=POLICY)),
        )


@asynccontextmanager
async def soniox_harness() -> AsyncIterator[Harness]:
    from voicebot.emulator.fake_soniox import FakeSoniox
    from voicebot.providers.soniox import SonioxSettings, SonioxSTT

    async with FakeSoniox(api_key=KEY) as fake:
        yield Harness(
            "soniox",
            lambda key: SonioxSTT(SonioxSettings(url=fake.url, api_key=key, policy=POLICY)),
        )


HARNESSES: dict[str, Callable[[], AbstractAsyncContextManager[Harness]]] = {
    "yandex": yandex_harness,
    "elevenlabs": elevenlabs_harness,
    "deepgram": deepgram_harness,
    "soniox": soniox_harness,
}


@pytest.fixture(params=list(HARNESSES))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with HARNESSES[request.param]() as h:
        yield h


@pytest.fixture
async def rec(harness: Harness) -> AsyncIterator[SpeechRecognizer]:
    r = harness.make(KEY)
    yield r
    await harness.close(r)


def opts(
    rate: int = 16000, script: list[str] = SCRIPT, sid: str | None = None
) -> RecognitionOptions:
    md = [("x-emulator-utterances-bin", json.dumps(script, ensure_ascii=False))]
    if sid:
        md.append(("x-emulator-script-id", sid))
    return RecognitionOptions(sample_rate=rate, eou_pause_ms=600, metadata=tuple(md))


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_finals_then_one_end_of_utterance_each(
    rec: SpeechRecognizer, speech, rate: int
) -> None:
    stream = await rec.open_stream(opts(rate))
    await feed(stream, call_audio(speech, ["haircut", "tomorrow"], rate, gap_ms=2500), rate)
    events = await collect(stream, eous=2)
    await stream.aclose()
    assert utterances(events) == SCRIPT
    # Every end of utterance closes at least one non-empty final; indexes never repeat.
    seen_text = False
    for ev in events:
        if isinstance(ev, Final) and ev.text:
            seen_text = True
        if isinstance(ev, EndOfUtterance):
            assert seen_text, "EndOfUtterance without a final before it"
            seen_text = False
    idx = [e.final_index for e in events if isinstance(e, Final)]
    assert idx == sorted(set(idx))


async def test_times_are_on_the_stream_clock(rec: SpeechRecognizer, speech) -> None:
    stream = await rec.open_stream(opts())
    await stream.send_silence(1000)  # stream time moves without caller audio
    audio = call_audio(speech, ["haircut", "tomorrow"], 16000, gap_ms=2500)
    await feed(stream, audio, 16000)
    events = await collect(stream, eous=2)
    await stream.aclose()
    total_ms = 1000 + len(audio) // 32
    finals = [e for e in events if isinstance(e, Final) and e.text]
    eous = [e for e in events if isinstance(e, EndOfUtterance)]
    phrase1_start = 1000 + 300
    assert phrase1_start - 200 <= finals[0].start_ms < finals[0].end_ms
    assert finals[0].end_ms <= eous[0].time_ms < finals[-1].start_ms
    assert finals[-1].end_ms <= eous[1].time_ms <= total_ms
    assert eous[1].time_ms - eous[0].time_ms > len(speech("tomorrow", 16000)) // 32


async def test_finish_flushes_trailing_speech_and_ends(rec: SpeechRecognizer, speech) -> None:
    stream = await rec.open_stream(opts(script=[SCRIPT[0]]))
    await feed(stream, silence(300, 16000) + speech("haircut", 16000), 16000)  # no pause after
    await stream.finish()
    events = await collect(stream, limit_s=10)  # iteration must end on its own
    await stream.aclose()
    assert utterances(events) == [SCRIPT[0]]


async def test_silence_is_not_speech(rec: SpeechRecognizer) -> None:
    stream = await rec.open_stream(opts())
    await feed(stream, silence(2000, 16000), 16000)
    await stream.send_silence(1000)
    await stream.finish()
    events = await collect(stream, limit_s=10)
    await stream.aclose()
    assert not [e for e in events if isinstance(e, Final) and e.text]
    assert utterances(events) == []


async def test_bad_credentials_raise_auth_error(harness: Harness, speech) -> None:
    """A refused key is an `AuthError`. SpeechKit's first refusal before any response is
    `ReopenNow` (the token may just have expired): the engine's one immediate reopen
    then gets the `AuthError` itself."""
    bad = harness.make("not-the-key")
    err: ProviderError | None = None
    reopens = 0
    try:
        for _ in range(3):
            try:
                stream = await bad.open_stream(opts())
                await feed(stream, silence(300, 16000) + speech("haircut", 16000), 16000)
                await collect(stream, limit_s=10)
                await stream.aclose()
            except ReopenNow as e:
                # The refusal, or, when an audio write raced it, gRPC's local INTERNAL
                # that hides the server's status (grpc/grpc#36066): both mean "reopen".
                assert isinstance(e.cause, AuthError) or e.cause.code == "INTERNAL", e
                reopens += 1
                continue
            except AuthError as e:  # at open or from the stream: both within the contract
                err = e
            break
    finally:
        await harness.close(bad)
    assert isinstance(err, AuthError)
    assert not err.retriable and err.provider == harness.name
    assert reopens <= 2
    assert "not-the-key" not in str(err)


async def test_script_continues_on_a_new_stream(rec: SpeechRecognizer, speech) -> None:
    """Offline contract: a call that reopens its stream continues its transcript."""
    sid = f"contract-{rec.name}"
    first = await rec.open_stream(opts(sid=sid))
    await feed(first, call_audio(speech, ["haircut"], 16000, gap_ms=2500), 16000)
    ev1 = await collect(first, eous=1)
    await first.aclose()
    second = await rec.open_stream(opts(sid=sid))
    await feed(second, call_audio(speech, ["tomorrow"], 16000, gap_ms=2500), 16000)
    ev2 = await collect(second, eous=1)
    await second.aclose()
    assert utterances(ev1) + utterances(ev2) == SCRIPT


async def test_aclose_mid_utterance_ends_iteration(rec: SpeechRecognizer, speech) -> None:
    stream = await rec.open_stream(opts())
    await feed(stream, silence(300, 16000) + speech("haircut", 16000)[:16000], 16000)
    got: list[Any] = []

    async def consume() -> None:
        async for ev in stream:
            got.append(ev)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    await stream.aclose()
    await asyncio.wait_for(task, 5)  # ends, and without an error
    assert not [e for e in got if isinstance(e, EndOfUtterance)]


@pytest.mark.parametrize(
    "provider", [p for p in HARNESSES if p != "yandex"]
)  # yandex: the engine's own tests
def test_whole_booking_call_through_simulate_cli(provider: str, tmp_path: Path) -> None:
    """`voicebot simulate --stt <provider> --json` books offline, each vendor on its fake."""
    dialogue = REPO / "tests/dialogues/03_time_first_then_date_service.yaml"
    store = f"sqlite:///{tmp_path / 'bookings.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    out = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "simulate", "--stt", provider, "--dialogue",
         str(dialogue), "--json", "--speed", "10", "--store", store],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["outcome"] == "booked", report["turns"]
    (booking,) = report["bookings"]
    assert booking["service"] == "styling" and booking["phone"] == "+79261112233"
    said = [t["text"] for t in report["turns"] if t["role"] == "caller"]
    assert said == yaml.safe_load(dialogue.read_text(encoding="utf-8"))["caller"]
    assert f"STT {provider} runs OFFLINE on a local fake server" in out.stderr
