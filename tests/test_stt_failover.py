"""Provider selection (registry) and failover, down to a whole call surviving a vendor loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.stt_providers_fixtures import call_audio, collect, feed, speech, utterances
from voicebot.config import Config
from voicebot.emulator.fake_deepgram import FakeDeepgram
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
    StreamLimitError,
)
from voicebot.providers.failover import FailoverRecognizer
from voicebot.providers.registry import (
    LazyRecognizer,
    build_recognizer,
    load_stt_settings,
    select_provider,
)

__all__ = ["speech"]

REPO = Path(__file__).resolve().parent.parent


def cfg_with(stt: dict[str, Any] | None = None) -> Config:
    cfg = Config()
    if stt is not None:
        cfg.domain["stt"] = stt
    return cfg


# --------------------------------------------------------------------------- selection


def test_selection_order_explicit_then_preference_then_first_configured() -> None:
    env = {"DEEPGRAM_API_KEY": "dg", "SONIOX_API_KEY": "sx"}
    s = load_stt_settings(cfg_with({"provider": "soniox"}), env)
    assert select_provider("deepgram", s, yandex=True) == "deepgram"
    assert select_provider(None, s, yandex=True) == "soniox"
    s = load_stt_settings(cfg_with({}), env)
    assert select_provider(None, s, yandex=True) == "yandex"
    assert select_provider(None, s, yandex=False) == "deepgram"
    # A preference that is not configured falls through to the first configured one.
    s = load_stt_settings(cfg_with({"provider": "elevenlabs"}), env)
    assert select_provider(None, s, yandex=False) == "deepgram"


def test_explicit_unconfigured_provider_is_a_clear_error() -> None:
    s = load_stt_settings(cfg_with({}), {})
    with pytest.raises(ValueError, match="ELEVENLABS_API_KEY"):
        select_provider("elevenlabs", s, yandex=True)
    with pytest.raises(ValueError, match="unknown STT provider"):
        select_provider("whisper", s, yandex=True)
    # Offline every vendor is usable: its local fake stands in.
    assert select_provider("elevenlabs", s, yandex=True, offline=True) == "elevenlabs"


def test_config_validation_and_secrets() -> None:
    with pytest.raises(ValueError, match=r"unknown setting stt\.deepgram\.modle"):
        load_stt_settings(cfg_with({"deepgram": {"modle": "nova-3"}}), {})
    with pytest.raises(ValueError, match="from the environment"):
        load_stt_settings(cfg_with({"soniox": {"api_key": "sk-in-yaml"}}), {})
    with pytest.raises(ValueError, match="unknown STT provider"):
        load_stt_settings(cfg_with({"failover": ["yandex", "nope"]}), {})
    s = load_stt_settings(
        cfg_with({"deepgram": {"model": "nova-2", "policy": {"max_reconnects": 7}}}),
        {"DEEPGRAM_API_KEY": "secret-dg-key"},
    )
    assert s.deepgram.model == "nova-2" and s.deepgram.policy.max_reconnects == 7
    assert "secret-dg-key" not in repr(s) and "secret-dg-key" not in str(s.redacted())
    assert s.redacted()["deepgram"]["api_key"] == "***"


def test_build_is_lazy_and_follows_failover_list() -> None:
    env = {"DEEPGRAM_API_KEY": "dg", "SONIOX_API_KEY": "sx"}
    cfg = cfg_with({"provider": "deepgram", "failover": ["elevenlabs", "soniox", "yandex"]})
    yandex = StubRecognizer("yandex", [])
    rec = build_recognizer(None, cfg, yandex=yandex, env=env)
    assert isinstance(rec, FailoverRecognizer)
    # elevenlabs has no key: skipped; the order is the configured one.
    assert rec.providers == ["deepgram", "soniox", "yandex"] and rec.name == "deepgram"
    assert all(not r.started for r in rec.recognizers if isinstance(r, LazyRecognizer))
    single = build_recognizer("soniox", cfg_with({}), yandex=None, env=env)
    assert isinstance(single, LazyRecognizer) and single.name == "soniox"


async def test_endpoints_override_reaches_a_server(speech) -> None:
    async with FakeDeepgram() as fake:
        fake.set_script(["запишите меня на стрижку"])
        rec = build_recognizer(
            "deepgram", cfg_with({}), yandex=None, endpoints_override={"deepgram": fake.url}, env={}
        )
        stream = await rec.open_stream(RecognitionOptions(eou_pause_ms=500))
        await feed(stream, call_audio(speech, ["haircut"], 16000), 16000)
        events = await collect(stream, eous=1)
        await stream.aclose()
        await rec.aclose()  # type: ignore[attr-defined]
    assert utterances(events) == ["запишите меня на стрижку"]


# --------------------------------------------------------------------------- the composite


class StubStream:
    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.closed = False

    async def send_audio(self, pcm: bytes) -> None: ...
    async def send_silence(self, duration_ms: int) -> None: ...
    async def finish(self) -> None: ...

    async def aclose(self) -> None:
        self.closed = True

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        return self._it()

    async def _it(self) -> AsyncIterator[RecognitionEvent]:
        for ev in self.events:
            if isinstance(ev, BaseException):
                raise ev
            yield ev


class StubRecognizer:
    """Each open_stream pops the next behaviour: a list of events/exception, or an
    exception raised by open_stream itself."""

    def __init__(self, name: str, plan: list[Any]) -> None:
        self.name = name
        self.plan = plan
        self.opened = 0
        self.closed = False

    async def open_stream(self, options: RecognitionOptions) -> StubStream:
        self.opened += 1
        step = self.plan.pop(0) if self.plan else [Final("ok", 0), EndOfUtterance(10)]
        if isinstance(step, BaseException):
            raise step
        return StubStream(step)

    async def aclose(self) -> None:
        self.closed = True


async def drain(rec: Any) -> list[RecognitionEvent] | ProviderError:
    stream = await rec.open_stream(RecognitionOptions())
    try:
        return [ev async for ev in stream]
    except ProviderError as e:
        return e


def lost(code: str = "UNAVAILABLE") -> ProviderError:
    return ProviderError("lost", code=code, retriable=True, provider="a")


async def test_auth_error_switches_and_is_re_raised_retriable() -> None:
    a = StubRecognizer("a", [[Final("x", 0), AuthError("no", code="401", provider="a")]])
    b = StubRecognizer("b", [])
    fo = FailoverRecognizer([a, b])
    err = await drain(fo)
    assert isinstance(err, ProviderError) and err.code == "FAILOVER" and err.retriable
    assert isinstance(err.__cause__, AuthError)
    assert fo.name == "b" and [(s.from_provider, s.to_provider) for s in fo.switches] == [
        ("a", "b")
    ]
    events = await drain(fo)
    assert isinstance(events, list) and b.opened == 1 and a.opened == 1


async def test_quota_switches_even_when_retriable() -> None:
    a = StubRecognizer("a", [[RateLimitError("busy", code="429", retriable=True, provider="a")]])
    fo = FailoverRecognizer([a, StubRecognizer("b", [])])
    await drain(fo)
    assert fo.name == "b"


async def test_connection_losses_switch_only_when_repeated() -> None:
    a = StubRecognizer("a", [[lost()], [Final("x", 0), EndOfUtterance(1), lost()], [lost()]])
    fo = FailoverRecognizer([a, StubRecognizer("b", [])], loss_threshold=2)
    e1 = await drain(fo)
    assert isinstance(e1, ProviderError) and e1.code == "UNAVAILABLE" and fo.name == "a"
    await drain(fo)  # results came before this loss: the count started over at 1
    assert fo.name == "a"
    e3 = await drain(fo)  # the second loss in a row
    assert isinstance(e3, ProviderError) and e3.code == "FAILOVER" and fo.name == "b"


async def test_stream_rotation_limit_is_not_a_failure() -> None:
    limit = StreamLimitError("cap", code="OUT_OF_RANGE", retriable=True, provider="a")
    a = StubRecognizer("a", [[limit], [limit], [limit]])
    fo = FailoverRecognizer([a, StubRecognizer("b", [])], loss_threshold=1)
    for _ in range(3):
        err = await drain(fo)
        assert isinstance(err, StreamLimitError)
    assert fo.name == "a" and not fo.switches


async def test_open_failure_moves_on_at_once_and_last_provider_stays() -> None:
    a = StubRecognizer("a", [AuthError("no", provider="a")])
    b = StubRecognizer("b", [[AuthError("no", provider="b")]])
    fo = FailoverRecognizer([a, b])
    err = await drain(fo)  # a refused at open: b served this very stream
    assert fo.name == "b" and b.opened == 1
    assert isinstance(err, AuthError)  # b is the last: its error is not dressed up
    assert fo.name == "b"


async def test_aclose_closes_only_owned() -> None:
    a, b = StubRecognizer("a", []), StubRecognizer("b", [])
    fo = FailoverRecognizer([a, b], owns=[b])
    await fo.aclose()
    assert not a.closed and b.closed


# --------------------------------------------------------------------------- a whole call


async def test_call_survives_losing_its_first_provider(tmp_path: Path) -> None:
    """Deepgram starts refusing mid-call; the call continues on Yandex, every turn answered."""
    from voicebot.clock import RealClock
    from voicebot.runtime import Runtime
    from voicebot.simulate import load_script, run_simulation

    script = load_script(REPO / "tests/dialogues/03_time_first_then_date_service.yaml")
    cfg = cfg_with({"provider": "deepgram", "failover": ["yandex"], "failover_after_losses": 2})
    speed = 8.0
    runtime = await Runtime.create(
        cfg,
        store=f"sqlite:///{tmp_path / 'b.sqlite3'}",
        clock=RealClock(start=script.now, speed=speed),
        force_emulator=True,
    )
    try:
        rec = runtime.recognizer
        assert isinstance(rec, FailoverRecognizer) and rec.providers == ["deepgram", "yandex"]
        dg = rec.recognizers[0]
        assert isinstance(dg, LazyRecognizer)

        async def sabotage() -> None:
            # After the caller's second utterance was recognized, Deepgram goes away.
            while True:
                await asyncio.sleep(0.02)
                sid = next(iter(runtime.sessions), None)
                if sid and dg.fake is not None and dg.fake.registry.position(sid) >= 2:
                    dg.fake.fail_all("http_401")
                    return

        saboteur = asyncio.create_task(sabotage())
        result = await asyncio.wait_for(
            run_simulation(script, cfg, speed=speed, runtime=runtime), 45
        )
        assert saboteur.done()
        report = result.report()
    finally:
        await runtime.aclose()
    assert [(s.from_provider, s.to_provider) for s in rec.switches] == [("deepgram", "yandex")]
    assert report["outcome"] == "booked"
    callers = [t["text"] for t in report["turns"] if t["role"] == "caller"]
    assert callers == [ln.say for ln in script.lines if ln.say]
    assert report["recognition"]["reconnects"] >= 1


async def test_failover_state_is_per_call() -> None:
    """One call losing its provider must not move the next call off the preferred one."""
    from voicebot.providers.base import AuthError, RecognitionOptions
    from voicebot.providers.failover import FailoverRecognizer

    class Refusing:
        name = "refusing"

        async def open_stream(self, options: RecognitionOptions):
            raise AuthError("key revoked", code="UNAUTHENTICATED")

    class Fine:
        name = "fine"

        async def open_stream(self, options: RecognitionOptions):
            return object()

    shared = FailoverRecognizer([Refusing(), Fine()])
    first, second = shared.for_call(), shared.for_call()
    await first.open_stream(RecognitionOptions())
    assert first.name == "fine" and [s.to_provider for s in shared.switches] == ["fine"]
    assert second.name == "refusing"  # untouched by the first call's failure
    assert shared.name == "refusing"


async def test_runtime_gives_each_call_its_own_failover_view() -> None:
    from voicebot.clock import VirtualClock
    from voicebot.config import Config
    from voicebot.dialogue import EchoProvider
    from voicebot.providers.failover import FailoverRecognizer
    from voicebot.runtime import Runtime

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    shared = FailoverRecognizer([Named("a"), Named("b")])
    runtime = Runtime(
        Config(),
        recognizer=shared,
        synthesizer=Named("tts"),  # type: ignore[arg-type]
        llm=None,
        dialogues=EchoProvider(),
        clock=VirtualClock(),
        offline=True,
    )

    class T:
        kind, sample_rate = "test", 8000

        async def send_event(self, event: object) -> None: ...

    one = runtime.open_call(T(), channel="test")  # type: ignore[arg-type]
    two = runtime.open_call(T(), channel="test")  # type: ignore[arg-type]
    rec_one = one.recognition._recognizer
    rec_two = two.recognition._recognizer
    assert rec_one is not shared and rec_two is not shared and rec_one is not rec_two
    rec_one._switch("test")
    assert rec_one.name == "b" and rec_two.name == "a" and shared.name == "a"
