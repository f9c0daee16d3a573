"""Asterisk AudioSocket: conformance (golden frames, fake session), pacing, barge-in,
the register endpoint, cleanup; and end-to-end booking calls via the engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fake_asterisk import FRAME, FakeAsterisk, spacing_stats
from tests.fake_host import FakeHost
from tests.fake_voximplant import ScriptedCaller, espeak_pcm, telephony_host, tone
from voicebot.config import Config
from voicebot.transports import audiosocket_register as asock
from voicebot.transports.audiosocket import (
    AudioSocketCall,
    AudioSocketServer,
    AudioSocketTransport,
    start_audiosocket,
)
from voicebot.transports.audiosocket_register import CallRegistry, add_register_route
from voicebot.transports.audiosocket_wire import (
    AUDIO_KINDS,
    AudioMessage,
    ProtocolError,
    decode_message,
    frame_bytes,
)

GOLDEN = json.loads((Path(__file__).parent / "golden/telephony/audiosocket.json").read_text())
WAIT = 10.0


def runs_to_pcm(runs: list[list[int]]) -> bytes:
    return b"".join(struct.pack("<h", v) * n for v, n in runs)


async def until(cond: Any, within: float = WAIT) -> None:
    """Poll a condition the protocol has no event for; `within` only guards hangs."""

    async def wait() -> None:
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), within)


@dataclass
class Env:
    runtime: FakeHost
    server: AudioSocketServer
    registry: CallRegistry
    calls: list[AudioSocketCall]
    http_url: str

    def client(self, call_uuid: str | None = None) -> FakeAsterisk:
        return FakeAsterisk("127.0.0.1", self.server.port, call_uuid)

    async def finished(self, n: int = 1) -> list[AudioSocketCall]:
        await until(lambda: len(self.calls) >= n)
        for c in self.calls[:n]:
            await asyncio.wait_for(c.finished.wait(), WAIT)
        return self.calls[:n]


@pytest.fixture
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    params = getattr(request, "param", {})
    runtime = telephony_host(Config(), greet_ms=params.get("greet_ms", 0))
    registry = CallRegistry()
    app = web.Application()
    add_register_route(app, registry)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()
    server = await start_audiosocket(runtime, registry, "127.0.0.1", 0)
    calls: list[AudioSocketCall] = []
    server.on_call = calls.append
    try:
        yield Env(runtime, server, registry, calls, str(http.make_url("/")))
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)
        await http.close()


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["name"])
async def test_golden_frames(env: Env, case: dict[str, Any]) -> None:
    exp = case["expect"]
    fake = env.client(GOLDEN["uuid"])
    await fake.connect(send_uuid=False)
    for hexframe in case["frames"]:
        await fake.send(bytes.fromhex(hexframe))
    if exp["end"] == "eof":
        want = runs_to_pcm(exp["pcm"])
        await until(
            lambda: env.runtime.sessions and len(env.runtime.sessions[0].audio) >= len(want)
        )
        await fake.aclose()
    else:
        # The server ends the call itself (hang-up, error, protocol violation); a
        # truncated message is only visible once Asterisk's side stops sending.
        assert fake.writer is not None
        fake.writer.write_eof()
        await asyncio.wait_for(fake.closed.wait(), WAIT)
        await fake.aclose()
    (call,) = await env.finished()
    assert call.stats.end == exp["end"]
    assert call.stats.uuid == exp["uuid"]
    assert fake.got.violations == []
    if not exp["session"]:
        assert env.runtime.sessions == []
        return
    (session,) = env.runtime.sessions
    assert bytes(session.audio) == runs_to_pcm(exp["pcm"])
    assert session.dtmf == exp["dtmf"]
    assert session.transport.sample_rate == exp.get("sample_rate", 8000)
    assert session.kwargs["channel"] == "audiosocket"
    assert session.kwargs["metadata"] == {"uuid": GOLDEN["uuid"]}
    assert session.ended == "caller_hangup"


async def test_bad_call_does_not_disturb_a_parallel_good_one(env: Env) -> None:
    speech = tone(1000, freq=300)
    good = env.client()
    assert await good.register(env.http_url, "+79160000001", "100") == 200
    await good.connect()
    streaming = asyncio.create_task(good.stream(speech))
    await asyncio.sleep(0.1)
    for bad_bytes in (
        b"\x10\x01",
        b"\x42\x00\x00",
        b"\x10\xff\xff",
        b"\x10\x01\x40" + b"\x00" * 10,
    ):
        bad = env.client()
        await bad.connect()
        await bad.send(bad_bytes)
        if len(bad_bytes) < 3 or bad_bytes.startswith(b"\x10\x01\x40"):
            await bad.aclose()  # truncated: only EOF reveals it
        await asyncio.wait_for(bad.closed.wait(), WAIT)
        await bad.aclose()
    await streaming
    await good.hangup()
    await asyncio.wait_for(good.closed.wait(), WAIT)
    await good.aclose()
    calls = await env.finished(5)
    by_caller = {s.kwargs["caller_id"]: s for s in env.runtime.sessions}
    assert bytes(by_caller["+79160000001"].audio) == bytes(320) + speech  # first frame: silence
    ends = sorted(c.stats.end for c in calls)
    assert ends == ["hangup", "protocol", "protocol", "protocol", "protocol"]


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize("env", [{"greet_ms": 1000}], indirect=True)
async def test_output_pacing_is_20ms_without_burst(env: Env) -> None:
    async with env.client() as fake:
        await until(lambda: len(fake.got.frames) == 50)
        await asyncio.sleep(0.2)  # idle: nothing more may arrive
        assert len(fake.got.frames) == 50
    await env.finished()
    times = [t for t, _ in fake.got.frames]
    mean, lead = spacing_stats(times)
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    print(
        f"\naudiosocket pacing: mean {mean:.2f} ms, min gap {min(gaps):.2f} ms, "
        f"max gap {max(gaps):.2f} ms, max lead over schedule {lead:.2f} ms"
    )
    assert 19.0 <= mean <= 21.0
    # No burst: never more than one frame ahead of the absolute 20 ms schedule.
    assert lead <= 20.0
    assert all(len(p) == FRAME for _, p in fake.got.frames)
    assert fake.got.pcm == tone(1000)
    assert fake.got.violations == []
    t = env.calls[0].transport
    assert t is not None and t.frames_sent == 50


@pytest.mark.parametrize("env", [{"greet_ms": 2000}], indirect=True)
async def test_clear_drops_the_queue_immediately(env: Env) -> None:
    async with env.client() as fake:
        await until(lambda: len(fake.got.frames) >= 10)
        t = env.calls[0].transport
        assert t is not None
        assert t.playout.is_playing()
        await t.clear()
        n = len(fake.got.frames)
        assert not t.playout.is_playing()
        assert t.playout.queued_ms() == pytest.approx(t.playout.played_ms())
        await asyncio.sleep(0.2)
        assert len(fake.got.frames) <= n + 1  # at most the frame already on the wire
        # Audio after the clear plays normally and is counted from the cut point.
        played_at_clear = t.playout.played_ms()
        await t.play(tone(100))
        await until(lambda: not t.playout.is_playing())
        assert t.playout.played_ms() == pytest.approx(played_at_clear + 100)
    await env.finished()
    assert len(fake.got.frames) < 2000 // 20


async def test_playout_counts_frames_written_and_pads_the_tail() -> None:
    writer = _RecordingWriter()
    t = AudioSocketTransport(writer)  # type: ignore[arg-type]
    t.start()
    await t.play(tone(50))  # 2.5 frames
    assert t.playout.queued_ms() == pytest.approx(50)
    await until(lambda: not t.playout.is_playing())
    assert t.playout.played_ms() == pytest.approx(50)
    frames = writer.frames()
    assert [k for k, _ in frames] == [0x10, 0x10, 0x10]
    assert all(len(p) == FRAME for _, p in frames)
    assert b"".join(p for _, p in frames) == tone(50) + bytes(160)
    await t.hangup("bye")
    assert writer.frames()[-1] == (0x00, b"")
    assert writer.closed


class _RecordingWriter:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, b: bytes) -> None:
        self.data += b

    async def drain(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def frames(self) -> list[tuple[int, bytes]]:
        out, pos = [], 0
        while pos < len(self.data):
            kind, n = struct.unpack_from(">BH", self.data, pos)
            out.append((kind, bytes(self.data[pos + 3 : pos + 3 + n])))
            pos += 3 + n
        return out


class _StepClock:
    """Time moves only by `jump`, so a stalled event loop can be staged exactly."""

    def __init__(self) -> None:
        self.t = 0.0
        self._waiters: list[asyncio.Future[None]] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    async def jump(self, dt: float) -> None:
        self.t += dt
        waiters, self._waiters = self._waiters, []
        for f in waiters:
            f.set_result(None)
        for _ in range(20):
            await asyncio.sleep(0)


async def test_catch_up_after_a_stall_but_never_more() -> None:
    clock = _StepClock()
    writer = _RecordingWriter()
    t = AudioSocketTransport(writer, clock)  # type: ignore[arg-type]
    t.start()
    await t.play(tone(2000))
    await clock.jump(0)
    assert len(writer.frames()) == 1  # frame 0 at t=0
    # (times sit 1 ms past the deadlines: no float ties)
    await clock.jump(0.021)
    assert len(writer.frames()) == 2  # on time: one frame
    await clock.jump(0.010)
    assert len(writer.frames()) == 2  # early: nothing
    await clock.jump(0.095)  # t=126 ms after a stall: frames due at 40..120 ms
    assert len(writer.frames()) == 2 + 5  # caught up exactly, no more
    await clock.jump(1.0)  # a stall beyond the catch-up window: schedule restarts
    assert len(writer.frames()) == 7 + 1
    assert t.restarts == 1
    await clock.jump(0.021)
    assert len(writer.frames()) == 9
    await t.aclose()


# --------------------------------------------------------------------------- hang-up, registry


@pytest.mark.parametrize("env", [{"greet_ms": 300}], indirect=True)
async def test_bot_hangup_plays_out_then_sends_0x00_and_closes(env: Env) -> None:
    async with env.client() as fake:
        await until(lambda: len(fake.got.frames) >= 2)
        t = env.calls[0].transport
        assert t is not None
        await t.hangup("goodbye")
        await asyncio.wait_for(fake.closed.wait(), WAIT)
    await env.finished()
    assert len(fake.got.frames) == 300 // 20  # the goodbye was not cut
    assert fake.got.hangups == 1
    assert fake.got.violations == []


async def test_register_endpoint_json_and_form(env: Env) -> None:
    a, b = env.client(), env.client()
    assert await a.register(env.http_url, "+79161234567", "+74951112233") == 200
    assert await b.register(env.http_url, "+79035550000", "200", form=True) == 200
    for fake in (a, b):
        await fake.connect()
        await until(
            lambda f=fake: any(s.kwargs["metadata"]["uuid"] == f.uuid for s in env.runtime.sessions)
        )
        await fake.hangup()
        await asyncio.wait_for(fake.closed.wait(), WAIT)
        await fake.aclose()
    await env.finished(2)
    got = {
        s.kwargs["metadata"]["uuid"]: (s.kwargs["caller_id"], s.kwargs["called_id"])
        for s in env.runtime.sessions
    }
    assert got[a.uuid] == ("+79161234567", "+74951112233")
    assert got[b.uuid] == ("+79035550000", "200")
    assert len(env.registry) == 0  # consumed


@pytest.mark.parametrize("hooks", [True, False])
async def test_registered_utterances_reach_the_emulator_only_with_hooks(
    env: Env, hooks: bool
) -> None:
    env.runtime.emulator_hooks = hooks
    utter = ["Здравствуйте, хочу записаться на стрижку", "Завтра"]
    fake = env.client()
    assert await fake.register(env.http_url, None, None, utterances=utter) == 200
    await fake.connect()
    await until(lambda: bool(env.runtime.sessions))
    await fake.hangup()
    await asyncio.wait_for(fake.closed.wait(), WAIT)
    await fake.aclose()
    await env.finished()
    md = dict(env.runtime.sessions[0].kwargs["stt_metadata"])
    if hooks:
        assert json.loads(md["x-emulator-utterances-bin"]) == utter
        assert md["x-emulator-script-id"] == fake.uuid  # positions survive stream rotation
    else:
        assert md == {}


async def test_unregistered_call_still_works_without_caller_id(env: Env) -> None:
    async with env.client() as fake:
        await fake.audio(tone(20))
        await until(lambda: env.runtime.sessions and env.runtime.sessions[0].audio)
        await fake.hangup()
        await asyncio.wait_for(fake.closed.wait(), WAIT)
    await env.finished()
    assert env.runtime.sessions[0].kwargs["caller_id"] is None


async def test_register_rejects_bad_input_and_untrusted_peers(env: Env) -> None:
    url = env.http_url.rstrip("/") + "/audiosocket/register"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"uuid": "not-a-uuid", "caller_id": "1"}) as r:
            assert r.status == 400
        async with http.post(url, data=b"{oops", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
        async with http.post(url, json=["x"]) as r:
            assert r.status == 400
        nested = b"[" * 2000 + b"]" * 2000  # under the size limit, over the parser's depth
        async with http.post(url, data=nested, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
    app = web.Application()
    add_register_route(app, env.registry, trusted=lambda remote: False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            body = {"uuid": "3f2c6a0e-8b1d-4c5e-9a7f-0123456789ab", "caller_id": "1"}
            async with http.post(server.make_url("/audiosocket/register"), json=body) as r:
                assert r.status == 403
    finally:
        await server.close()
    assert len(env.registry) == 0


def test_registry_expires_and_is_bounded() -> None:
    now = [0.0]
    reg = CallRegistry(ttl_s=60, max_entries=2, clock=lambda: now[0])
    u = [f"3f2c6a0e-8b1d-4c5e-9a7f-00000000000{i}" for i in range(3)]
    reg.register(u[0], "a", "x")
    now[0] = 30
    reg.register(u[1], "b", "x")
    reg.register(u[2], "c", "x")  # evicts the oldest
    assert len(reg) == 2 and reg.pop(u[0]) is None
    now[0] = 95  # u[1] and u[2] registered at 30: expired after 90
    assert reg.pop(u[1]) is None
    assert reg.pop(u[2]) is None
    with pytest.raises(ValueError):
        reg.register("nope", None, None)


def test_trusted_peers() -> None:
    assert asock._trusted_peer("127.0.0.1")
    assert asock._trusted_peer("::1")
    assert asock._trusted_peer("10.1.2.3")
    assert not asock._trusted_peer("8.8.8.8")
    assert not asock._trusted_peer(None)


# --------------------------------------------------------------------------- cleanup


@pytest.mark.parametrize("env", [{"greet_ms": 2000}], indirect=True)
async def test_hangup_leaves_no_task_or_socket_behind(env: Env) -> None:
    await asyncio.sleep(0)
    before = {t for t in asyncio.all_tasks() if not t.done()}
    fakes = []
    for i in range(3):
        fake = env.client()
        await fake.connect()
        await fake.stream(tone(100), realtime=False)
        await until(lambda f=fake: len(f.got.frames) >= 2)
        if i == 0:
            await fake.hangup()  # polite 0x00
        await fake.aclose()  # or just a dropped TCP connection
        fakes.append(fake)
    await env.finished(3)
    await asyncio.sleep(0.05)
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before
    assert not leftover, leftover
    for c in env.calls:
        assert c.writer.is_closing()
        assert c.transport is not None and c.transport.closed and not c.transport.pacer.running
    assert all(s.ended == "caller_hangup" for s in env.runtime.sessions)
    assert not env.server.calls


@pytest.mark.parametrize("env", [{"greet_ms": 5000}], indirect=True)
async def test_server_close_ends_live_calls(env: Env) -> None:
    fake = env.client()
    await fake.connect()
    await until(lambda: len(fake.got.frames) >= 2)
    env.server.close()
    await asyncio.wait_for(env.server.wait_closed(), WAIT)
    await asyncio.wait_for(fake.closed.wait(), WAIT)
    await fake.aclose()
    assert env.runtime.sessions[0].ended == "shutdown"
    assert not env.server.calls


# --------------------------------------------------------------------------- end to end

BOOKING_LINES = [
    "Здравствуйте, хочу подстричься завтра в 15:00",
    "Меня зовут Анна, телефон +7 916 123-45-67",
    "Да, всё верно",
]


@pytest.mark.parametrize(("kind", "rate"), [(0x10, 8000), (0x12, 16000)], ids=["slin", "slin16"])
async def test_e2e_booking_call_over_audiosocket(tmp_path: Path, kind: int, rate: int) -> None:
    """Asterisk's side of a whole booking call through the real engine: at 8 kHz
    (0x10), and on a wideband line (0x12, slin16), where the call runs at 16 kHz."""
    from tests.emulator_fixtures import fast_settings
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(env={})
    cfg.emulator = fast_settings()
    cfg.yandex.tts.speed = 2.0  # the emulator's espeak talks twice as fast: shorter test
    speech = [(line, espeak_pcm(line, rate)) for line in BOOKING_LINES]
    runtime = await Runtime.create(
        cfg, store=f"sqlite:///{tmp_path / 'bookings.sqlite3'}", force_emulator=True
    )
    registry = CallRegistry()
    app = web.Application()
    add_register_route(app, registry)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()
    server = await start_audiosocket(runtime, registry, "127.0.0.1", 0)
    calls: list[AudioSocketCall] = []
    server.on_call = calls.append
    try:
        tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
        fake = FakeAsterisk("127.0.0.1", server.port, kind=kind)
        status = await fake.register(
            str(http.make_url("/")), "+79161234567", "+74951112233", utterances=BOOKING_LINES
        )
        assert status == 200
        await fake.connect()

        def quiet_since() -> float | None:
            if not fake.got.frames:
                return None
            end = fake.got.frames[-1][0] + 0.02  # Asterisk plays each frame on arrival
            return end if time.monotonic() >= end else None

        async def bad_call() -> None:
            bad = FakeAsterisk("127.0.0.1", server.port)
            await bad.connect()
            await bad.audio(tone(20))
            await bad.send(b"\x42\x00\x01x")  # unknown type
            await asyncio.wait_for(bad.closed.wait(), WAIT)
            await bad.aclose()

        caller = ScriptedCaller(fake.audio, quiet_since, fake.first_audio_after, rate=rate)
        bad_task = asyncio.create_task(bad_call())
        turns = await caller.run(speech)
        await bad_task
        if not fake.closed.is_set():
            await fake.hangup()
        await asyncio.wait_for(fake.closed.wait(), WAIT)
        await fake.aclose()
        await until(lambda: len(calls) == 2)
        for c in calls:
            await asyncio.wait_for(c.finished.wait(), WAIT)
        good = next(c for c in calls if c.stats.frames_in > 100)
        bad = next(c for c in calls if c is not good)
        for line in good.session.transcript:
            print(f"  {line.at_ms:>6} {line.role}: {line.text}")
        summary = good.stats.summary
        assert summary is not None
        dialogue = summary["dialogue"]
        assert dialogue["outcome"] == "booked", dialogue
        (booking,) = dialogue["bookings"]
        assert booking["service"] == "haircut"
        assert booking["name"] == "Анна"
        assert booking["phone"] == "+79161234567"
        assert "T15:00:00" in booking["start"]
        assert bad.stats.end == "protocol"
        # The line's rate end to end: the engine asked recognition and synthesis for
        # the transport's rate; nothing between them resamples; we answer in the kind.
        assert good.transport is not None and good.transport.sample_rate == rate
        emu = runtime.emulator
        streams = [r for r in emu.stt.stats.recent if r.script_id == fake.uuid]
        assert streams and all(r.sample_rate == rate for r in streams)
        assert emu.tts.requests and all(r.sample_rate == rate for r in emu.tts.requests)
        assert fake.got.violations == []
        assert all(len(p) == fake.frame for _, p in fake.got.frames)
        # Pacing over the whole call, per stretch of continuous bot speech.
        spans = [r for r in fake.got.runs() if len(r) >= 25]
        assert spans
        total_frames = sum(len(r) - 1 for r in spans)
        mean = sum((r[-1] - r[0]) for r in spans) / total_frames * 1000
        worst_lead = max(spacing_stats(r)[1] for r in spans)
        print(
            f"\naudiosocket e2e pacing: {total_frames + len(spans)} frames in {len(spans)} "
            f"stretches, mean spacing {mean:.2f} ms, max lead over schedule {worst_lead:.2f} ms"
        )
        assert 19.0 <= mean <= 21.0
        assert worst_lead <= 20.0
        report = []
        for t in turns:
            at = fake.first_audio_after(t.last_word_at)
            assert at is not None
            t.bot_audio_at = at
            report.append(f"{t.line[:24]!r}: {t.response_ms:.0f} ms")
        print("audiosocket e2e: bot's first audio after caller's last word: " + "; ".join(report))
        await asyncio.sleep(0.05)
        leftover = {t for t in asyncio.all_tasks() if not t.done()} - tasks_before
        leftover = {t for t in leftover if "AioServer" not in repr(t)}
        assert not leftover, leftover
        assert not server.calls
        assert all(c.writer.is_closing() for c in calls)
    finally:
        server.close()
        await server.wait_closed()
        await http.close()
        await runtime.aclose()


async def test_busy_server_hangs_up_the_extra_call(env: Env) -> None:
    env.runtime.cfg.server.max_sessions = 1
    async with env.client() as first:
        await until(lambda: bool(env.runtime.sessions))
        second = env.client()
        await second.connect()
        await asyncio.wait_for(second.closed.wait(), WAIT)
        await second.aclose()
        assert second.got.hangups == 1 and not second.got.frames
        await first.hangup()
        await asyncio.wait_for(first.closed.wait(), WAIT)
    calls = await env.finished(2)
    assert sorted(c.stats.end for c in calls) == ["busy", "hangup"]
    assert len(env.runtime.sessions) == 1
    assert env.runtime.released == env.runtime.sessions


# --------------------------------------------------------------------------- wideband kinds


@pytest.mark.parametrize("kind", sorted(AUDIO_KINDS))
def test_every_audio_kind_takes_whole_20ms_frames_only(kind: int) -> None:
    size = frame_bytes(kind)
    assert size == AUDIO_KINDS[kind] * 2 // 50
    msg = decode_message(kind, bytes(size * 2))
    assert isinstance(msg, AudioMessage) and msg.kind == kind
    with pytest.raises(ProtocolError) as err:
        decode_message(kind, bytes(size // 2))  # e.g. μ-law labelled as slin
    assert err.value.code == "bad_frame_size" and "20 ms" in str(err.value)


async def test_a_44_1_khz_line_runs_the_call_at_16_khz_and_answers_in_its_kind() -> None:
    """0x15: the session speaks 16 kHz; what goes out is resampled to 44.1 kHz frames
    of 1764 bytes, sent as 0x15."""
    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            written.append(data)

        async def drain(self) -> None:
            return None

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            return None

    t = AudioSocketTransport(Writer(), kind=0x15)  # type: ignore[arg-type]
    assert (t.line_rate, t.sample_rate) == (44100, 16000)
    t.start()
    await t.play(tone(200, rate=16000))
    await asyncio.sleep(0.3)
    await t.aclose()
    frames = [w for w in written if w[:1] == b"\x15"]
    assert len(frames) >= 9
    assert all(len(f) == 3 + 1764 for f in frames)
    assert t.playout.played_ms() == pytest.approx(200, abs=25)
