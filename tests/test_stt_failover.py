"""Provider selection (registry) and failover, down to a whole call surviving a vendor loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.stt_providers_fixtures import call_audio, collect, feed, speech, utterances
from voicebot.clock import VirtualClock
from voicebot.config import Config, EngineSettings, RecoveryPolicy, config_from_dict
from voicebot.emulator.fake_deepgram import FakeDeepgram
from voicebot.engine.assembler import UtteranceAssembler
from voicebot.engine.recognition import ContinuousRecognizer
from voicebot.engine.recovery import Action, Recovery
from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
    ReopenNow,
    StreamLimitError,
)
from voicebot.providers.failover import FailoverRecognizer
from voicebot.providers.registry import LazyRecognizer, build_recognizer, select_provider

__all__ = ["speech"]

REPO = Path(__file__).resolve().parent.parent


def cfg_with(stt: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Config:
    """A config with this `stt:` section (typed `Config.stt`) and these environment keys."""
    return config_from_dict({"stt": stt} if stt is not None else {}, env or {})


# --------------------------------------------------------------------------- selection


def test_selection_order_explicit_then_preference_then_first_configured() -> None:
    env = {"DEEPGRAM_API_KEY": "dg", "SONIOX_API_KEY": "sx"}
    s = cfg_with({"provider": "soniox"}, env).stt
    assert select_provider("deepgram", s, yandex=True) == "deepgram"
    assert select_provider(None, s, yandex=True) == "soniox"
    s = cfg_with({}, env).stt
    assert select_provider(None, s, yandex=True) == "yandex"
    assert select_provider(None, s, yandex=False) == "deepgram"
    # A preference that is not configured falls through to the first configured one.
    s = cfg_with({"provider": "elevenlabs"}, env).stt
    assert select_provider(None, s, yandex=False) == "deepgram"


def test_explicit_unconfigured_provider_is_a_clear_error() -> None:
    s = cfg_with({}).stt
    with pytest.raises(ValueError, match="ELEVENLABS_API_KEY"):
        select_provider("elevenlabs", s, yandex=True)
    with pytest.raises(ValueError, match="unknown STT provider"):
        select_provider("whisper", s, yandex=True)
    # Offline every vendor is usable: its local fake stands in.
    assert select_provider("elevenlabs", s, yandex=True, offline=True) == "elevenlabs"


def test_config_validation_and_secrets() -> None:
    with pytest.raises(ValueError, match=r"unknown setting stt\.deepgram\.modle"):
        cfg_with({"deepgram": {"modle": "nova-3"}})
    with pytest.raises(ValueError, match="from the environment"):
        cfg_with({"soniox": {"api_key": "sk-in-yaml"}})
    with pytest.raises(ValueError, match="unknown STT provider"):
        cfg_with({"failover": ["yandex", "nope"]})
    cfg = cfg_with(
        # `policy.max_reconnects` is from before the engine owned recovery: ignored.
        {"deepgram": {"model": "nova-2", "policy": {"max_reconnects": 7, "open_timeout_s": 2}}},
        {"DEEPGRAM_API_KEY": "secret-dg-key"},
    )
    s = cfg.stt
    assert s.deepgram.model == "nova-2" and s.deepgram.policy.open_timeout_s == 2
    assert s.deepgram.api_key == "secret-dg-key"
    assert "secret-dg-key" not in repr(s) and "secret-dg-key" not in str(cfg.redacted())
    assert cfg.redacted()["stt"]["deepgram"]["api_key"] == "***"


def test_old_recovery_keys_still_work() -> None:
    cfg = config_from_dict(
        {"engine": {"reconnect_max_attempts": 3}, "stt": {"failover_after_losses": 4}}
    )
    assert cfg.engine.recovery.max_attempts == 3
    assert cfg.engine.recovery.failover_after_losses == 4
    with pytest.raises(ValueError, match="both"):
        config_from_dict({"engine": {"stream_rotate_s": 100, "recovery": {"rotate_s": 200}}})


def test_build_is_lazy_and_follows_failover_list() -> None:
    env = {"DEEPGRAM_API_KEY": "dg", "SONIOX_API_KEY": "sx"}
    cfg = cfg_with({"provider": "deepgram", "failover": ["elevenlabs", "soniox", "yandex"]}, env)
    yandex = StubRecognizer("yandex", [])
    rec = build_recognizer(None, cfg.stt, yandex=yandex)
    assert isinstance(rec, FailoverRecognizer)
    # elevenlabs has no key: skipped; the order is the configured one.
    assert rec.providers == ["deepgram", "soniox", "yandex"] and rec.name == "deepgram"
    assert all(not r.started for r in rec.recognizers if isinstance(r, LazyRecognizer))
    single = build_recognizer("soniox", cfg_with({}, env).stt, yandex=None)
    assert isinstance(single, LazyRecognizer) and single.name == "soniox"


async def test_endpoints_override_reaches_a_server(speech) -> None:
    async with FakeDeepgram() as fake:
        fake.set_script(["запишите меня на стрижку"])
        rec = build_recognizer(
            "deepgram", cfg_with({}).stt, yandex=None, endpoints_override={"deepgram": fake.url}
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


def lost(code: str = "UNAVAILABLE") -> ProviderError:
    return ProviderError("lost", code=code, retriable=True, provider="a")


def chain(n: int = 2) -> FailoverRecognizer:
    return FailoverRecognizer([StubRecognizer(name, []) for name in "abc"[:n]])


# The one place that decides (voicebot/engine/recovery.py), case by case.


def test_auth_error_fails_over_at_once() -> None:
    fo = chain()
    v = Recovery(RecoveryPolicy(), fo).failure(AuthError("no", code="401", provider="a"))
    assert v.action is Action.FAIL_OVER and v.delay_s == 0
    assert fo.name == "b" and [(s.from_provider, s.to_provider) for s in fo.switches] == [
        ("a", "b")
    ]


def test_quota_fails_over_even_when_retriable() -> None:
    fo = chain()
    err = RateLimitError("busy", code="429", retriable=True, provider="a")
    assert Recovery(RecoveryPolicy(), fo).failure(err).action is Action.FAIL_OVER
    assert fo.name == "b"


def test_connection_losses_fail_over_only_when_repeated() -> None:
    fo = chain()
    r = Recovery(RecoveryPolicy(failover_after_losses=2, backoff_s=0.2), fo)
    v = r.failure(lost())
    assert v.action is Action.RETRY and v.delay_s == pytest.approx(0.2) and fo.name == "a"
    r.results()  # results came before the next loss: the count starts over
    assert r.failure(lost()).action is Action.RETRY and fo.name == "a"
    v = r.failure(lost())  # the second loss in a row
    assert v.action is Action.FAIL_OVER and v.delay_s == 0 and fo.name == "b"


def test_stream_limit_is_not_a_failure() -> None:
    fo = chain()
    r = Recovery(RecoveryPolicy(failover_after_losses=1), fo)
    limit = StreamLimitError("cap", code="OUT_OF_RANGE", retriable=True, provider="a")
    for _ in range(3):
        r.results()
        v = r.failure(limit)
        assert v.action is Action.RETRY and v.delay_s == pytest.approx(0.2)
    assert fo.name == "a" and not fo.switches


def test_last_provider_stays_backoff_grows_then_gives_up() -> None:
    fo = chain()
    r = Recovery(RecoveryPolicy(max_attempts=4, backoff_s=0.5, backoff_max_s=1.5), fo)
    assert r.failure(AuthError("no", provider="a")).action is Action.FAIL_OVER
    delays = [r.failure(AuthError("no", provider="b")) for _ in range(5)]
    assert [v.action for v in delays] == [Action.RETRY] * 4 + [Action.GIVE_UP]
    assert [v.delay_s for v in delays[:4]] == [0.5, 1.0, 1.5, 1.5]
    assert fo.name == "b"  # the last one stays


def test_reopen_now_once_then_its_cause_counts() -> None:
    fo = chain()
    r = Recovery(RecoveryPolicy(), fo)
    refused = ReopenNow(AuthError("token expired", code="UNAUTHENTICATED", provider="yandex"))
    v = r.failure(refused)
    assert v.action is Action.RETRY and v.delay_s == 0 and fo.name == "a"
    assert r.failure(refused).action is Action.FAIL_OVER  # refused again: the auth error


def test_without_failover_a_fatal_error_is_retried() -> None:
    r = Recovery(RecoveryPolicy(max_attempts=2))
    assert r.failure(AuthError("no")).action is Action.RETRY
    assert r.failure(AuthError("no")).action is Action.RETRY
    assert r.failure(AuthError("no")).action is Action.GIVE_UP


async def test_failover_opens_streams_with_zero_retries() -> None:
    a = StubRecognizer("a", [AuthError("no", provider="a")])
    fo = FailoverRecognizer([a, StubRecognizer("b", [])])
    with pytest.raises(AuthError):
        await fo.open_stream(RecognitionOptions())
    assert a.opened == 1 and fo.name == "a"  # the engine decides, not the composite


# The engine's recognizer acting on those verdicts, in virtual time.


async def test_call_recognition_fails_over_in_virtual_time() -> None:
    """Provider a drops its streams; after two losses the call moves to b, the waits
    are the policy's backoff on the call's clock, and b hears the audio replayed."""
    a = StubRecognizer("a", [[lost()], [lost()]])
    b = StubRecognizer("b", [[Final("ok", 0, 0, 500), EndOfUtterance(600)]])
    fo = FailoverRecognizer([a, b])
    clock = VirtualClock()
    policy = RecoveryPolicy(backoff_s=0.4, failover_after_losses=2)
    heard: list[str] = []
    assembler = UtteranceAssembler(
        normalize=False,
        min_voiced_ms=0,
        on_partial=lambda seg: None,
        on_utterance=lambda utt: heard.append(utt.text),
    )
    rec = ContinuousRecognizer(
        fo,
        RecognitionOptions(sample_rate=8000),
        EngineSettings(recovery=policy),
        clock,
        assembler,
    )
    rec.feed(bytes(1600))  # 100 ms of caller audio
    await clock.advance(0.0)
    assert a.opened == 1 and b.opened == 0
    await clock.advance(0.39)  # the first loss waits backoff_s before the retry
    assert a.opened == 1
    await clock.advance(0.02)
    assert a.opened == 2  # the second loss in a row fails over at once
    await clock.advance(0.0)
    assert b.opened == 1 and fo.switches[0].to_provider == "b"
    assert a.opened == 2 and rec.failed is None
    assert heard == ["ok"]  # b's results reach the call
    await rec.aclose()


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
    with pytest.raises(AuthError):
        await first.open_stream(RecognitionOptions())
    assert first.fail_over("401: fatal")  # what the engine's recovery does next
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

    from voicebot.transports.base import AckPlayout

    class T:
        kind, sample_rate = "test", 8000
        playout = AckPlayout(8000)  # the session reads what was played from here

        async def send_event(self, event: object) -> None: ...

    one = runtime.open_call(T(), channel="test")  # type: ignore[arg-type]
    two = runtime.open_call(T(), channel="test")  # type: ignore[arg-type]
    rec_one = one.recognition._recognizer
    rec_two = two.recognition._recognizer
    assert rec_one is not shared and rec_two is not shared and rec_one is not rec_two
    rec_one.fail_over("test")
    assert rec_one.name == "b" and rec_two.name == "a" and shared.name == "a"
