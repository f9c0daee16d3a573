"""Voximplant media WebSocket: conformance (golden messages, fake session) and
end-to-end booking calls through the engine and the emulator."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fake_host import FakeHost
from tests.fake_voximplant import FakeVoximplant, ScriptedCaller, espeak_pcm, telephony_host, tone
from voicebot.config import Config
from voicebot.redact import mask_number
from voicebot.transports import g711, voximplant
from voicebot.transports.voximplant import VoximplantCall, make_handler
from voicebot.transports.voximplant_wire import ENCODINGS, reply_encoding

GOLDEN = Path(__file__).parent / "golden" / "telephony"
SECRET = "s3cret-vox-Ω"  # non-ASCII on purpose: compared as bytes
WAIT = 10.0  # generous upper bound for "eventually", never a timing assertion


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def runs_to_pcm(runs: list[list[int]]) -> bytes:
    return b"".join(struct.pack("<h", v) * n for v, n in runs)


@dataclass
class Env:
    runtime: FakeHost
    calls: list[VoximplantCall]
    url: str

    def client(self, **kw: Any) -> FakeVoximplant:
        kw.setdefault("token", SECRET)
        return FakeVoximplant(self.url, **kw)

    async def finished(self, n: int = 1) -> list[VoximplantCall]:
        await until(lambda: len(self.calls) >= n)
        for c in self.calls[:n]:
            await asyncio.wait_for(c.finished.wait(), WAIT)
        return self.calls[:n]


def make_cfg(**vox: Any) -> Config:
    cfg = Config()
    cfg.telephony.voximplant.secret = SECRET
    cfg.server.max_message_bytes = 8192
    for k, v in vox.items():
        setattr(cfg.telephony.voximplant, k, v)
    return cfg


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    params = getattr(request, "param", {})
    runtime = telephony_host(
        make_cfg(**params.get("vox", {})),
        greet_ms=params.get("greet_ms", 0),
        greet_pcm=params.get("greet_pcm", b""),
    )
    if params.get("no_secret"):
        runtime.cfg.telephony.voximplant.secret = ""
    calls: list[VoximplantCall] = []
    app = web.Application()
    handler = make_handler(
        runtime,
        runtime.cfg.telephony.voximplant,
        max_message_bytes=runtime.cfg.server.max_message_bytes,
        on_call=calls.append,
    )
    app.router.add_get("/voximplant", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Env(runtime, calls, str(server.make_url("/voximplant")))
    finally:
        await server.close()


async def until(cond: Any, within: float = WAIT) -> None:
    """Poll a condition the protocol has no event for; `within` only guards hangs."""

    async def wait() -> None:
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), within)


# --------------------------------------------------------------------------- pure units


def test_encoding_rate_pairing() -> None:
    assert {n: e.sample_rate for n, e in ENCODINGS.items()} == {
        "ULAW": 8000,
        "ALAW": 8000,
        "PCM8": 8000,
        "PCM16": 16000,
    }
    # Config asks for ULAW; a 16 kHz call is still answered at 16 kHz, never ULAW.
    assert reply_encoding(ENCODINGS["PCM16"], "ULAW").name == "PCM16"
    assert reply_encoding(ENCODINGS["ALAW"], "ULAW").name == "ULAW"
    assert reply_encoding(ENCODINGS["PCM8"], "PCM16").name == "PCM8"
    assert reply_encoding(ENCODINGS["ULAW"], "bogus").name == "ULAW"


def test_mask_number_keeps_only_two_digits() -> None:
    assert mask_number("+79161234567") == "+*********67"
    assert mask_number(None) == "-"
    assert "1234" not in mask_number("+7 916 123-45-67")


# --------------------------------------------------------------------------- golden inbound


@pytest.mark.parametrize("case", golden("voximplant_inbound")["cases"], ids=lambda c: c["name"])
async def test_inbound_golden(env: Env, case: dict[str, Any]) -> None:
    exp = case["expect"]
    async with env.client() as vox:
        for msg in case["send"]:
            await vox.send(msg)
        want = runs_to_pcm(exp["pcm"])
        await until(
            lambda: (
                env.runtime.sessions
                and len(env.runtime.sessions[0].audio) >= len(want)
                and len(env.runtime.sessions[0].dtmf) >= len(exp.get("dtmf", []))
            )
        )
        # The server answers with its own untagged start in the reply encoding.
        await until(lambda: vox.bot.start is not None)
    (call,) = await env.finished()
    session = env.runtime.sessions[0]
    assert bytes(session.audio) == want
    assert session.transport.sample_rate == exp["sample_rate"]
    assert vox.bot.start["start"]["mediaFormat"] == {
        "encoding": exp["reply_encoding"],
        "sampleRate": exp["sample_rate"],
    }
    assert session.kwargs["channel"] == "voximplant"
    assert session.kwargs["caller_id"] == exp["caller_id"]
    assert session.kwargs["called_id"] == exp["called_id"]
    assert session.kwargs["metadata"] == exp["metadata"]
    assert session.kwargs["stt_metadata"] == ()
    assert session.dtmf == exp.get("dtmf", [])
    assert call.stats.concealed_samples == exp["concealed_samples"]
    assert call.stats.bad_messages == 0
    assert session.ended == "caller_hangup"
    assert vox.bot.violations == []


# --------------------------------------------------------------------------- golden outbound


@pytest.mark.parametrize("env", [{"greet_pcm": bytes(640)}], indirect=True)
async def test_outbound_golden(env: Env) -> None:
    g = golden("voximplant_outbound")
    async with env.client(custom={"callerid": "+79160000000"}) as vox:
        await vox.start()
        await until(lambda: vox.bot.media == 2)
        call = env.calls[0]
        assert call.transport is not None
        await call.transport.hangup("bot_hangup")
        await asyncio.wait_for(vox.closed.wait(), WAIT)
    await env.finished()
    assert vox.bot.messages == g["messages"]
    assert len(vox.bot.pcm) == g["bot_pcm_samples"] * 2
    assert vox.close_code == 1000
    assert env.runtime.sessions[0].ended == "caller_hangup"


@pytest.mark.parametrize("env", [{"greet_ms": 3000}], indirect=True)
async def test_clear_on_barge_in_drops_audio_and_resets_accounting(env: Env) -> None:
    g = golden("voximplant_outbound")
    async with env.client() as vox:
        await vox.start()
        await until(lambda: vox.bot.media >= 10)
        t = env.calls[0].transport
        assert t is not None and t.playout.is_playing()
        await t.clear()
        # Everything not yet played is gone: queue empty, nothing left to play.
        assert t.playout.queued_ms() == pytest.approx(t.playout.played_ms())
        assert not t.playout.is_playing()
        assert t.playout.lead_ms() == pytest.approx(0.0)
        await until(lambda: g["clear"] in vox.bot.customs)
        n_at_clear = vox.bot.media
        # New audio after the clear continues the stream (chunk +1) from a fresh lead.
        await t.play(tone(100))
        await until(lambda: vox.bot.media >= n_at_clear + 5)
        await asyncio.sleep(0.05)
    await env.finished()
    clear_idx = vox.bot.messages.index(g["clear"])
    after = [m for m in vox.bot.messages[clear_idx + 1 :] if m.get("event") == "media"]
    assert len(after) == 5  # only the 100 ms played after the clear: the 3 s greeting is gone
    assert vox.bot.media < 3000 // 20
    assert vox.bot.violations == []


@pytest.mark.parametrize("env", [{"greet_ms": 1500, "vox": {"max_lead_ms": 300}}], indirect=True)
async def test_lead_stays_under_the_bound(env: Env) -> None:
    async with env.client() as vox:
        await vox.start()
        await until(lambda: vox.bot.media == 1500 // 20, within=20)
    await env.finished()
    t = env.calls[0].transport
    assert t is not None
    # Sent ahead of real time (close to the bound), but never past it.
    assert t.max_lead_seen_ms <= 300 + 1e-6
    assert t.max_lead_seen_ms >= 300 - 20
    # As seen by the far end's buffer, allowing one frame of network jitter.
    assert vox.bot.max_lead_ms <= 300 + 20
    assert vox.bot.dropped_ms == 0
    # And not a sample lost or altered beyond μ-law precision.
    sent = tone(1500)
    assert bytes(vox.bot.pcm) == g711.ulaw_to_pcm(g711.pcm_to_ulaw(sent))
    print(
        f"\nvoximplant lead: server max {t.max_lead_seen_ms:.0f} ms, far end max {vox.bot.max_lead_ms:.0f} ms (bound 300)"
    )


@pytest.mark.parametrize("env", [{"greet_ms": 1500}], indirect=True)
async def test_a_stale_playback_idle_does_not_mark_new_audio_played(env: Env) -> None:
    """MEDIA_ENDED arrives ~1 s late; one that follows our latest send is about older audio."""
    async with env.client() as vox:
        await vox.start()
        await until(lambda: vox.bot.media == 75)  # all of it sent (within the 2 s lead)
        t = env.calls[0].transport
        assert t is not None and t.playout.is_playing()
        await vox.send({"customEvent": "playback_idle"})
        await vox.send({"customEvent": "dtmf", "digit": "1"})  # processed after the idle
        await until(lambda: env.runtime.sessions and env.runtime.sessions[0].dtmf)
        assert t.playout.is_playing()
    await env.finished()


@pytest.mark.parametrize("env", [{"greet_ms": 400}], indirect=True)
async def test_playback_idle_syncs_playout(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voximplant, "PLAYBACK_IDLE_GRACE_S", 0.0)
    async with env.client() as vox:
        await vox.start()
        await until(lambda: vox.bot.media == 20)
        t = env.calls[0].transport
        assert t is not None and t.playout.is_playing()
        await vox.send({"customEvent": "playback_idle"})
        await until(lambda: not t.playout.is_playing())
    await env.finished()


async def test_scenario_hangup_ends_the_session(env: Env) -> None:
    async with env.client() as vox:
        await vox.start()
        await until(lambda: bool(env.runtime.sessions))
        await vox.send({"customEvent": "hangup"})
        await asyncio.wait_for(vox.closed.wait(), WAIT)
    await env.finished()
    assert env.runtime.sessions[0].ended == "caller_hangup"
    assert vox.close_code == 1000


async def test_emulator_utterances_pass_only_with_emulator_hooks(env: Env) -> None:
    utter = ["Да", "Нет"]
    async with env.client(custom={"x-emulator-utterances": utter}) as vox:
        await vox.start()
        await until(lambda: bool(env.runtime.sessions))
    await env.finished()
    md = dict(env.runtime.sessions[0].kwargs["stt_metadata"])
    assert json.loads(md["x-emulator-utterances-bin"]) == utter
    assert md["x-emulator-script-id"]  # one id per call: positions survive stream rotation
    env.runtime.emulator_hooks = False  # production: a caller cannot script the emulator
    async with env.client(custom={"x-emulator-utterances": utter}) as vox:
        await vox.start()
        await until(lambda: len(env.runtime.sessions) == 2)
    await env.finished(2)
    assert env.runtime.sessions[1].kwargs["stt_metadata"] == ()


# --------------------------------------------------------------------------- golden errors


@pytest.mark.parametrize("case", golden("voximplant_errors")["cases"], ids=lambda c: c["name"])
async def test_errors_golden(env: Env, case: dict[str, Any]) -> None:
    enc = case["after_start"] if isinstance(case["after_start"], str) else "ULAW"
    async with env.client(encoding=enc) as vox:
        if case["after_start"]:
            await vox.start()
            await until(lambda: bool(env.runtime.sessions))
        if case.get("oversize"):
            await vox.send_raw("x" * (env.runtime.cfg.server.max_message_bytes + 1))
        elif case.get("binary"):
            await vox.send_raw(bytes.fromhex(case["raw"]))
        else:
            await vox.send_raw(case["raw"])
        if "close" in case:
            await asyncio.wait_for(vox.closed.wait(), WAIT)
        else:
            errors = lambda: [m for m in vox.bot.customs if m["customEvent"] == "error"]  # noqa: E731
            await until(lambda: errors())
            # The call goes on: a valid start (if needed) and frame still get through.
            if not case["after_start"]:
                await vox.start()
            frame = tone(20, vox.rate)
            await vox.media(frame)
            await until(lambda: env.runtime.sessions and len(env.runtime.sessions[0].audio) > 0)
            expected = g711.ulaw_to_pcm(g711.pcm_to_ulaw(frame)) if enc == "ULAW" else frame
            assert bytes(env.runtime.sessions[0].audio) == expected
            assert not vox.closed.is_set()
    (call,) = await env.finished()
    if "error" in case:
        assert case["error"] in call.stats.errors
        codes = [m["code"] for m in vox.bot.customs if m["customEvent"] == "error"]
        if case.get("binary") is None:
            assert codes[0] == case["error"]
    if "close" in case:
        assert vox.close_code == case["close"]
    else:
        assert vox.close_code == 1000
    for s in env.runtime.sessions:
        assert s.ended is not None


async def test_too_many_bad_messages_closes_1008(env: Env) -> None:
    async with env.client() as vox:
        await vox.start()
        for _ in range(30):
            await vox.send_raw("not json")
        await asyncio.wait_for(vox.closed.wait(), WAIT)
    await env.finished()
    assert vox.close_code == 1008


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"token": None}, 401),
        ({"token": "wrong"}, 401),
        ({"token": SECRET[:-1]}, 401),
        ({"token": None, "bearer": "wrong"}, 401),
        ({"token": ""}, 401),
    ],
)
async def test_bad_secret_is_refused_before_upgrade(
    env: Env, kw: dict[str, Any], status: int
) -> None:
    vox = env.client(**kw)
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await vox.connect()
    assert exc.value.status == status
    assert env.runtime.sessions == []
    assert env.calls == []


async def test_bearer_header_is_accepted(env: Env) -> None:
    async with env.client(token=None, bearer=SECRET) as vox:
        await vox.start()
        await until(lambda: bool(env.runtime.sessions))
    await env.finished()


@pytest.mark.parametrize("env", [{"no_secret": True}], indirect=True)
async def test_no_secret_configured_refuses_everyone(env: Env) -> None:
    for kw in ({"token": ""}, {"token": "anything"}, {"token": None}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await env.client(**kw).connect()
        assert exc.value.status == 403
    assert env.calls == []


def test_server_mounts_the_telephony_endpoints() -> None:
    from voicebot.server import create_app

    app = create_app(telephony_host(make_cfg()))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/voximplant", "/audiosocket/register"} <= paths


# --------------------------------------------------------------------------- isolation, cleanup


@pytest.mark.parametrize("env", [{"greet_ms": 200}], indirect=True)
async def test_bad_call_does_not_disturb_a_parallel_good_one(env: Env) -> None:
    speech = tone(600, freq=300)

    async def good() -> FakeVoximplant:
        async with env.client(custom={"callerid": "good"}) as vox:
            await vox.start()
            await vox.stream(speech, realtime=True)
            await until(lambda: vox.bot.media >= 10)
        return vox

    async def bad() -> FakeVoximplant:
        async with env.client(custom={"callerid": "bad"}) as vox:
            await vox.start()
            await vox.send_raw("{broken")
            await vox.send_raw("x" * 10_000)  # oversized: closes this call only
            await asyncio.wait_for(vox.closed.wait(), WAIT)
        return vox

    good_vox, bad_vox = await asyncio.gather(good(), bad())
    await env.finished(2)
    by_caller = {s.kwargs["caller_id"]: s for s in env.runtime.sessions}
    assert bad_vox.close_code == 1009
    assert bytes(by_caller["good"].audio) == g711.ulaw_to_pcm(g711.pcm_to_ulaw(speech))
    assert good_vox.close_code == 1000
    assert good_vox.bot.violations == []


@pytest.mark.parametrize("env", [{"greet_ms": 2000}], indirect=True)
async def test_hangup_leaves_no_task_or_socket_behind(env: Env) -> None:
    await asyncio.sleep(0)
    before = {t for t in asyncio.all_tasks() if not t.done()}
    for _ in range(3):
        async with env.client() as vox:
            await vox.start()
            await vox.stream(tone(100), realtime=False)
            await until(lambda: vox.bot.media >= 3)
        # The caller hung up mid-greeting.
    await env.finished(3)
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert not leftover, leftover
    for c in env.calls:
        assert c.ws.closed
        assert c.transport is not None and not c.transport.pacer.running
    assert all(s.ended == "caller_hangup" for s in env.runtime.sessions)


# --------------------------------------------------------------------------- end to end

BOOKING_LINES = [
    "Здравствуйте, хочу подстричься завтра в 15:00",
    "Меня зовут Анна, телефон +7 916 123-45-67",
    "Да, всё верно",
]


@pytest.fixture(scope="module")
def caller_speech() -> list[tuple[str, bytes]]:
    return [(line, espeak_pcm(line, 8000)) for line in BOOKING_LINES]


@dataclass
class E2E:
    runtime: Any
    calls: list[VoximplantCall]
    url: str


@pytest.fixture
async def e2e(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[E2E]:
    from tests.emulator_fixtures import fast_settings
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(env={})
    cfg.telephony.voximplant.secret = SECRET
    cfg.emulator = fast_settings()
    cfg.yandex.tts.speed = 2.0  # the emulator's espeak talks twice as fast: shorter test
    cfg.engine.barge_in = getattr(request, "param", {}).get("barge_in", False)
    runtime = await Runtime.create(
        cfg, store=f"sqlite:///{tmp_path / 'bookings.sqlite3'}", force_emulator=True
    )
    calls: list[VoximplantCall] = []
    app = web.Application()
    handler = make_handler(
        runtime,
        runtime.cfg.telephony.voximplant,
        max_message_bytes=runtime.cfg.server.max_message_bytes,
        on_call=calls.append,
    )
    app.router.add_get("/voximplant", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield E2E(runtime, calls, str(server.make_url("/voximplant")))
    finally:
        await server.close()
        await runtime.aclose()


def vox_caller(vox: FakeVoximplant) -> ScriptedCaller:
    def quiet_since() -> float | None:
        if not vox.bot.arrivals:
            return None
        end = vox.buffer_end
        return end if time.monotonic() >= end else None

    return ScriptedCaller(
        vox.media,
        quiet_since,
        vox.first_audio_after,
    )


@pytest.mark.flaky(reruns=1)  # real-time audio: once more if a loaded box starved it
@pytest.mark.parametrize("e2e", [{"barge_in": True}], indirect=True)
async def test_e2e_booking_call_over_voximplant(e2e: E2E, caller_speech) -> None:
    """A whole booking; the caller says «да» over the bot's read-back. A yes to a
    read-back not heard out confirms nothing (issue 13): the bot reads it again, and
    the caller's second «да» books."""
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    custom = {
        "callerid": "+79161234567",
        "did": "+74951112233",
        "x-emulator-utterances": [*BOOKING_LINES, "Да"],
    }
    caller_speech = [*caller_speech, ("Да", espeak_pcm("Да", 8000))]

    async def bad_call() -> FakeVoximplant:
        async with FakeVoximplant(e2e.url, token=SECRET, encoding="ULAW") as bad:
            await bad.start()
            await bad.send_raw("{broken json")
            await bad.send_raw(
                json.dumps(
                    {
                        "event": "start",
                        "start": {"mediaFormat": {"encoding": "OPUS", "sampleRate": 48000}},
                    }
                )
            )
            await asyncio.wait_for(bad.closed.wait(), WAIT)
        return bad

    async with FakeVoximplant(e2e.url, token=SECRET, custom=json.dumps(custom)) as vox:
        await vox.start()
        caller = vox_caller(vox)
        bad_task = asyncio.create_task(bad_call())
        turns = await caller.run(caller_speech, barge_in_line=2, barge_after_s=2.0)
        bad = await bad_task
        if not vox.closed.is_set():
            await vox.stop()
    calls = await asyncio.wait_for(_all_finished(e2e.calls, 2), WAIT)
    good = next(c for c in calls if c.stats.media_in > 100)
    summary = good.stats.summary
    assert summary is not None
    dialogue = summary["dialogue"]
    for line in good.session.transcript:
        print(f"  {line.at_ms:>6} {line.role}: {line.text}")
    assert dialogue["outcome"] == "booked", dialogue
    # The stored call record holds what the caller heard: the read-back they talked
    # over is cut where the clear stopped it; the repeated one is whole.
    record = await e2e.runtime.dialogues.store.get_call(good.session.session_id)
    bot_lines = [t["text"] for t in record.transcript if t["role"] == "bot"]
    readbacks = [t for t in bot_lines if t.startswith("Записываю вас")]
    assert len(readbacks) == 2
    assert not readbacks[0].endswith("Всё верно?") and readbacks[1].endswith("Всё верно?")
    (booking,) = dialogue["bookings"]
    assert booking["service"] == "haircut"
    assert booking["name"] == "Анна"
    assert booking["phone"] == "+79161234567"
    assert "T15:00:00" in booking["start"]
    # 8 kHz end to end: the session ran at the transport's rate, and what the bot sent
    # decodes as μ-law at 8 kHz (a 16 kHz or linear mix-up would not round-trip).
    assert good.transport is not None and good.transport.sample_rate == 8000
    assert vox.bot.start["start"]["mediaFormat"] == {"encoding": "ULAW", "sampleRate": 8000}
    emu = e2e.runtime.emulator
    streams = [r for r in emu.stt.stats.recent if r.script_id == good.call_id]
    assert streams and all(r.sample_rate == 8000 for r in streams)
    assert emu.tts.requests and all(r.sample_rate == 8000 for r in emu.tts.requests)
    assert vox.bot.violations == []
    assert vox.bot.dropped_ms == 0
    assert vox.bot.max_lead_ms <= e2e.runtime.cfg.telephony.voximplant.max_lead_ms + 20
    # The bad call was refused without touching the good one.
    assert bad.close_code == 1003
    # Barge-in: the engine cleared the bot while the caller spoke over the read-back;
    # the scenario got {"customEvent":"clear"} and Voximplant's buffer was dropped.
    assert caller.barge_in_at is not None
    assert good.transport.clears >= 1
    clear_at = vox.clear_times[0]
    assert caller.barge_in_at <= clear_at <= turns[2].last_word_at + 1.0
    print(
        f"voximplant e2e: clear {1000 * (clear_at - caller.barge_in_at):.0f} ms after the caller began talking over the bot"
    )
    # Bot's first audio after the caller's last word, per turn.
    report = []
    for t in turns:
        at = vox.first_audio_after(t.last_word_at)
        assert at is not None
        t.bot_audio_at = at
        report.append(f"{t.line[:24]!r}: {t.response_ms:.0f} ms")
    print("\nvoximplant e2e: bot's first audio after caller's last word: " + "; ".join(report))
    print(f"voximplant e2e: max lead {vox.bot.max_lead_ms:.0f} ms, summary {dialogue['summary']}")
    # Hang-up cleanup: no call task or socket left.
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - tasks_before
    # (the emulator's gRPC server keeps a task waiting for its next RPC: not a call's)
    leftover = {t for t in leftover if "AioServer" not in repr(t)}
    assert not leftover, leftover
    assert all(c.ws.closed for c in calls)


async def _all_finished(calls: list[VoximplantCall], n: int) -> list[VoximplantCall]:
    while len(calls) < n:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for c in calls:
        await c.finished.wait()
    return calls


# --------------------------------------------------------------------------- the VoxEngine scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scripts/voximplant/voicebot.voxengine.js"

# Fake VoxEngine objects; the scenario runs in a node `vm` and we record what it does.
_HARNESS = r"""
const vm = require("vm"), fs = require("fs");
const log = [];
function emitter(name) {
  const h = {};
  return { name, h, addEventListener(ev, fn) { (h[ev] = h[ev] || []).push(fn); },
           fire(ev, arg) { (h[ev] || []).forEach((fn) => fn(arg || {})); } };
}
const ws = Object.assign(emitter("ws"), {
  send(t) { log.push(["ws.send", JSON.parse(t)]); },
  close() { log.push(["ws.close"]); },
  clearMediaBuffer() { log.push(["ws.clearMediaBuffer"]); },
  sendMediaTo(c) { log.push(["ws.sendMediaTo", c.name]); },
});
const call = Object.assign(emitter("call"), {
  id() { return "call-1"; }, answer() { log.push(["call.answer"]); },
  hangup() { log.push(["call.hangup"]); }, handleTones(on) { log.push(["call.handleTones", on]); },
  sendMediaTo(target, p) { log.push(["call.sendMediaTo", target.name, p]); },
});
const app = emitter("app");
const ctx = {
  VoxEngine: { addEventListener: app.addEventListener,
               createWebSocket(url, p) { log.push(["createWebSocket", url, p]); return ws; },
               terminate() { log.push(["terminate"]); } },
  AppEvents: { CallAlerting: "AppEvents.CallAlerting" },
  CallEvents: { Connected: "Connected", Disconnected: "Disconnected", Failed: "Failed",
                ToneReceived: "ToneReceived" },
  WebSocketEvents: { OPEN: "OPEN", MESSAGE: "MESSAGE", CLOSE: "CLOSE", ERROR: "ERROR",
                     MEDIA_ENDED: "WebSocket.MediaEventEnded" },
  WebSocketAudioEncoding: { ULAW: "ULAW", ALAW: "ALAW", PCM8: "PCM8", PCM16: "PCM16" },
  Logger: { write() {} }, JSON, String,
};
vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), ctx);
app.fire("AppEvents.CallAlerting", { call, callerid: "+79161234567", destination: "+74951112233" });
call.fire("Connected");
ws.fire("OPEN");
ws.fire("MESSAGE", { text: '{"event":"media","media":{}}' });
ws.fire("MESSAGE", { text: "not json" });
ws.fire("MESSAGE", { text: '{"customEvent":"clear"}' });
call.fire("ToneReceived", { tone: "5" });
ws.fire("WebSocket.MediaEventEnded");
ws.fire("MESSAGE", { text: '{"customEvent":"hangup"}' });
call.fire("Disconnected");
console.log(JSON.stringify(log));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_voxengine_scenario_in_a_fake_voxengine() -> None:
    out = subprocess.run(
        ["node", "-e", _HARNESS, str(SCENARIO)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    log = json.loads(out.stdout)
    names = [e[0] for e in log]
    assert names.index("call.answer") < names.index("createWebSocket")
    url, params = next(e[1:] for e in log if e[0] == "createWebSocket")
    assert url.endswith("/voximplant?call=call-1")
    assert {"name": "Authorization", "value": "Bearer change-me"} in params["headers"]
    # Caller -> bot as μ-law 8 kHz with caller id and number; bot -> caller bound too.
    (target, send) = next(e[1:] for e in log if e[0] == "call.sendMediaTo")
    assert target == "ws"
    assert send == {
        "encoding": "ULAW",
        "customParameters": {"callerid": "+79161234567", "did": "+74951112233"},
    }
    assert ["ws.sendMediaTo", "call"] in log
    assert ["call.handleTones", True] in log
    assert names.count("ws.clearMediaBuffer") == 1  # only for the clear event
    sent = [e[1] for e in log if e[0] == "ws.send"]
    assert {"customEvent": "dtmf", "digit": "5"} in sent
    assert {"customEvent": "playback_idle"} in sent
    assert "call.hangup" in names  # on the bot's hangup event
    # The call ended: the scenario closes the socket itself, then terminates.
    assert names.index("ws.close") < names.index("terminate")


async def test_busy_server_refuses_before_upgrade(env: Env) -> None:
    env.runtime.cfg.server.max_sessions = 1
    async with env.client() as first:
        await first.start()
        await until(lambda: bool(env.runtime.sessions))
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await env.client().connect()
        assert exc.value.status == 503
    await env.finished()
    assert len(env.runtime.sessions) == 1
    assert env.runtime.released == env.runtime.sessions
