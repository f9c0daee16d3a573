"""The load generator of `voicebot bench`: N concurrent phone-like callers, one process.

Every caller streams 20 ms frames continuously (speech, then silence, like a phone
line), listens to each bot reply at real-time pace, then says its next line. One
shared frame clock drives all callers on absolute deadlines (no task or timer per
frame, so the generator stays cheap and a stall is caught up, not stretched); how late
that clock ran is reported, so a saturated generator is visible in the results.

Measured here, at the client:
- voice-to-voice: the send time of the caller's last voiced frame -> the first bot
  audio frame received after it;
- underruns: bot audio of one reply arriving after the client's playout buffer ran
  dry (ws/voximplant: the server sends ahead of real time, so a gap is a stall);
  AudioSocket frames must arrive every 20 ms: a gap over 60 ms mid-reply is one;
- errors (`error` events, protocol violations, exceptions) and dropped calls
  (connections lost without the call ending properly).

    python -m voicebot.bench_load --transport ws --url ws://127.0.0.1:P/ws \
        --audio caller_16000.json --calls N --duration S --out result.json

Prints `STEADY <unix time>` when all calls are up and `END <unix time>` when the
measured window closes, so the parent can sample the server's CPU over exactly it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import struct
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from voicebot.bench_audio import FRAME_MS, conversation, load

log = logging.getLogger("voicebot.bench_load")

FRAME_S = FRAME_MS / 1000
REPLY_TIMEOUT_S = 10.0  # no bot audio this long after the caller spoke: no reply
REPLY_END_TIMEOUT_S = 30.0
PAUSE_AFTER_REPLY_S = 0.8  # the caller waits this long after the bot finished (echo tail)
UNDERRUN_SLACK_S = 0.02  # ws/voximplant: arrival this much after the buffer ran dry
AUDIOSOCKET_GAP_S = 0.06  # audiosocket: a gap this long mid-reply
ACK_EVERY_FRAMES = 5  # browser `playback` acks every 100 ms
HANGUP_WAIT_S = 3.0  # after its last line, the caller waits this long for the bot's goodbye


@dataclass
class Stats:
    v2v_ms: list[float] = field(default_factory=list)
    v2v_by_line: dict[int, list[float]] = field(default_factory=dict)  # caller line no.
    underruns: int = 0
    underrun_gaps_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    dropped_calls: int = 0
    calls_started: int = 0
    calls_completed: int = 0  # ended by the bot (hang-up) or by us at the end, cleanly
    bot_hangups: int = 0
    replies: int = 0
    no_reply: int = 0
    turn_events: list[dict[str, Any]] = field(default_factory=list)
    tick_lag_ms: list[float] = field(default_factory=list)
    # (first audio at, caller line, v2v ms): a reply type slowed by a burst shows as a ramp
    v2v_timeline: list[tuple[float, int, float]] = field(default_factory=list)
    # Soak accounting (ws only: the browser protocol shows transcripts and bookings).
    utterances_said: int = 0
    lost_utterances: int = 0  # said long enough before the call ended, never transcribed
    booking_ids: list[str] = field(default_factory=list)  # bookings confirmed to a caller

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what[:200])


class FrameClock:
    """One 20 ms clock for every caller: each tick asks each live caller for one frame."""

    def __init__(self, stats: Stats) -> None:
        self.callers: set[Caller] = set()
        self._stats = stats
        self.measuring = False  # lag is recorded only in the measured window

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        t_next = loop.time()
        while not stop.is_set():
            now = loop.time()
            lag = now - t_next
            if lag > 0.005 and self.measuring:
                self._stats.tick_lag_ms.append(lag * 1000)
            for caller in list(self.callers):
                try:
                    await caller.tick(now)
                except Exception as exc:  # a broken socket ends that call only
                    caller.fail(f"send: {exc!r}")
            t_next += FRAME_S
            delay = t_next - loop.time()
            if delay < -1.0:  # hopelessly behind: resync (counted in tick_lag_ms)
                t_next = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))


class Caller:
    """One call's caller side, independent of the transport's wire format."""

    def __init__(
        self,
        audio: dict[str, tuple[bytes, int]],
        script: list[str],
        rate: int,
        stats: Stats,
    ) -> None:
        self.audio = audio
        self.script = script  # this call's lines; the emulator gets the same texts
        self.rate = rate
        self.frame_bytes = rate * 2 * FRAME_MS // 1000
        self.silence = bytes(self.frame_bytes)
        self.stats = stats
        self.line_no = 0
        self._speech: bytes = b""
        self._pos = 0
        self._last_voiced_at = -1  # byte offset of the last voiced frame's start
        self.speech_end: float | None = None  # send time of the last voiced frame
        self.spoke = asyncio.Event()
        # Bot audio playout model (client side).
        self.playout_end = 0.0  # loop time the received bot audio finishes playing
        self.received_ms = 0.0
        self.reply_active = False
        self.first_audio = asyncio.Event()
        self.reply_done = asyncio.Event()
        self.ended = asyncio.Event()  # the call is over (either side)
        self.ended_cleanly = False
        self.hanging_up = False  # we hang up: the connection closing is expected
        self.failed: str | None = None
        self._frames = 0
        self.reply_v2v: float | None = None  # v2v of the reply now playing (diagnostics)
        self.said_at: list[float] = []  # loop time each line started
        self.finals: int | None = None  # final transcripts seen (None: not visible)

    # ------------------------------------------------------------- microphone

    def say(self, line: int) -> None:
        pcm, last = self.audio[self.script[line]]
        self._speech, self._pos = pcm, 0
        self._last_voiced_at = last * self.frame_bytes
        self.speech_end = None
        self.spoke.clear()
        self.said_at.append(asyncio.get_running_loop().time())
        self.stats.utterances_said += 1

    def count_lost(self, now: float) -> None:
        """Lines said over REPLY_TIMEOUT_S (+ speech) before the end that never came
        back as a final transcript (transports that show transcripts only)."""
        if self.finals is None:
            return
        due = sum(1 for t in self.said_at if now - t > REPLY_TIMEOUT_S + 5.0)
        self.stats.lost_utterances += max(0, due - self.finals)

    async def tick(self, now: float) -> None:
        if self._pos < len(self._speech):
            frame = self._speech[self._pos : self._pos + self.frame_bytes]
            if self._pos == self._last_voiced_at:
                self.speech_end = now
                self.first_audio.clear()
                self.reply_done.clear()
            self._pos += self.frame_bytes
            if self._pos >= len(self._speech):
                self.spoke.set()
        else:
            frame = self.silence
        self._frames += 1
        await self.send_audio(frame, now, self._frames % ACK_EVERY_FRAMES == 0)

    def played_ms(self, now: float) -> float:
        return self.received_ms - max(0.0, self.playout_end - now) * 1000

    # ------------------------------------------------------------- bot audio

    def on_bot_audio(self, nbytes: int, now: float, *, paced: bool = False) -> None:
        dur = nbytes / (self.rate * 2)
        if self.reply_active:
            gap = now - self.playout_end
            limit = AUDIOSOCKET_GAP_S - FRAME_S if paced else UNDERRUN_SLACK_S
            if gap > limit:
                self.stats.underruns += 1
                self.stats.underrun_gaps_ms.append(round(gap * 1000, 1))
        else:
            self.reply_active = True
            if self.speech_end is not None and not self.first_audio.is_set():
                v2v = round((now - self.speech_end) * 1000, 1)
                self.stats.v2v_ms.append(v2v)
                self.stats.v2v_by_line.setdefault(self.line_no, []).append(v2v)
                self.reply_v2v = v2v
                self.stats.v2v_timeline.append((round(now, 3), self.line_no, v2v))
            else:
                self.reply_v2v = None
            self.first_audio.set()
        self.playout_end = max(self.playout_end, now) + dur
        self.received_ms += dur * 1000

    def on_reply_done(self) -> None:
        """The server finished sending this reply (ws: `turn`; telephony: idle line)."""
        self.reply_active = False
        self.reply_done.set()

    def fail(self, why: str) -> None:
        if self.failed is None and not self.ended.is_set() and not self.hanging_up:
            self.failed = why
        self.ended.set()

    # ------------------------------------------------------------- transport hooks

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        raise NotImplementedError

    async def connect(self) -> None:
        raise NotImplementedError

    async def hangup(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- the conversation

    async def converse(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        await self._listen(loop)  # the greeting
        while loop.time() < deadline and not self.ended.is_set():
            await _sleep_or(PAUSE_AFTER_REPLY_S, self.ended)
            if self.line_no >= len(self.script):
                # All said (booked): the bot says goodbye and hangs up; if it does not
                # (the conversation went another way), the caller hangs up.
                await _sleep_or(HANGUP_WAIT_S, self.ended)
                return
            if self.ended.is_set() or loop.time() >= deadline:
                return
            self.say(self.line_no)
            self.line_no += 1
            await _wait_or(self.spoke, self.ended, 60)
            if self.speech_end is None or self.ended.is_set():
                continue
            if not await _wait_or(self.first_audio, self.ended, REPLY_TIMEOUT_S):
                if not self.ended.is_set():
                    self.stats.no_reply += 1
                continue
            self.stats.replies += 1
            await self._listen(loop)

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the reply has been sent and the local buffer has played it out."""
        await _wait_or(self.reply_done, self.ended, REPLY_END_TIMEOUT_S)
        while not self.ended.is_set() and self.playout_end > loop.time():
            await _sleep_or(self.playout_end - loop.time() + 0.001, self.ended)


async def _wait_or(ev: asyncio.Event, other: asyncio.Event, limit_s: float) -> bool:
    """Wait for `ev`; False when `other` is set first or on timeout."""
    if ev.is_set():
        return True
    a, b = asyncio.ensure_future(ev.wait()), asyncio.ensure_future(other.wait())
    try:
        await asyncio.wait({a, b}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        a.cancel()
        b.cancel()
    return ev.is_set()


async def _sleep_or(seconds: float, ev: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ev.wait(), max(0.0, seconds))


# ============================================================================ ws


class WsCaller(Caller):
    """The browser protocol (docs/websocket-protocol.md): PCM binary frames + JSON."""

    def __init__(self, http: aiohttp.ClientSession, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._http = http
        self._url = url
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_ack = -1.0
        self.finals = 0

    async def connect(self) -> None:
        self._ws = await self._http.ws_connect(self._url, max_msg_size=4 << 20)
        start = {"type": "start", "sample_rate": self.rate, "emulator_utterances": self.script}
        await self._ws.send_str(json.dumps(start, ensure_ascii=False))
        self._reader = asyncio.create_task(self._read())
        if not await _wait_or(self._ready, self.ended, 15):
            raise ConnectionError(self.failed or "no `ready` in 15 s")

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        ws = self._ws
        if ws is None or ws.closed or self.ended.is_set():
            return
        await ws.send_bytes(frame)
        if ack:
            played = round(self.played_ms(now), 1)
            if played != self._last_ack:
                self._last_ack = played
                await ws.send_str(f'{{"type":"playback","played_ms":{played}}}')

    async def _read(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.on_bot_audio(len(msg.data), loop.time())
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_event(json.loads(msg.data))
                else:
                    break
        except Exception as exc:
            self.fail(f"ws read: {exc!r}")
        code = self._ws.close_code
        if not self.ended.is_set():
            if code == 1000 and self.ended_cleanly:
                self.ended.set()
            else:
                self.fail(f"ws closed with {code} before `done`")
        self.ended.set()

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "ready":
            self._ready.set()
        elif kind == "turn":
            self.stats.turn_events.append(
                {
                    "trigger": ev.get("trigger"),
                    "line": self.line_no,
                    "client_v2v_ms": self.reply_v2v,
                    **ev["latency_ms"],
                }
            )
            self.on_reply_done()
        elif kind == "bot_text" and ev.get("final") and not ev.get("text"):
            self.on_reply_done()  # nothing to say: no audio, no `turn` event
        elif kind == "transcript" and not ev.get("segment", {}).get("partial", True):
            self.finals = (self.finals or 0) + 1
        elif kind == "booking":
            self.stats.booking_ids.append(str(ev.get("booking", {}).get("id", "")))
        elif kind == "error":
            self.stats.error(f"server error event: {ev.get('code')}")
        elif kind == "done":
            self.ended_cleanly = True
            reason = str(ev.get("summary", {}).get("reason", ""))
            if reason.startswith("bot_hangup"):
                self.stats.bot_hangups += 1

    async def hangup(self) -> None:
        ws = self._ws
        if ws is not None and not ws.closed and not self.ended.is_set():
            with contextlib.suppress(Exception):
                await ws.send_str('{"type":"stop"}')
                await _wait_or(self.ended, self.ended, 10)
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


# ============================================================================ voximplant


class VoximplantCaller(Caller):
    """Voximplant's media WebSocket (tests/fake_voximplant.py): JSON + base64 μ-law."""

    def __init__(self, http: aiohttp.ClientSession, url: str, secret: str, **kw: Any) -> None:
        super().__init__(**kw)
        from voicebot.transports import g711

        self._g711 = g711
        self._http = http
        self._url = url
        self._secret = secret
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._chunk = 0
        self._samples = 0
        self._idle: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        call_id = uuid.uuid4().hex
        self._ws = await self._http.ws_connect(
            f"{self._url}?call={call_id}",
            headers={"Authorization": f"Bearer {self._secret}"},
            max_msg_size=4 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        await self._ws.send_str(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": 0,
                    "start": {
                        "mediaFormat": {"encoding": "ULAW", "sampleRate": 8000, "channels": 1},
                        "customParameters": {
                            "call_id": call_id,
                            "x-emulator-utterances": self.script,
                        },
                    },
                }
            )
        )

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        ws = self._ws
        if ws is None or ws.closed or self.ended.is_set():
            return
        self._chunk += 1
        payload = base64.b64encode(self._g711.pcm_to_ulaw(frame)).decode()
        await ws.send_str(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": self._chunk,
                    "media": {
                        "chunk": self._chunk,
                        "timestamp": self._samples,
                        "payload": payload,
                    },
                }
            )
        )
        self._samples += len(frame) // 2

    async def _read(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        continue
                    break
                ev = json.loads(msg.data)
                kind = ev.get("event")
                if kind == "media":
                    nbytes = len(base64.b64decode(ev["media"]["payload"])) * 2  # μ-law
                    self.on_bot_audio(nbytes, loop.time())
                    self._arm_idle(loop)
                elif kind == "stop":
                    self.ended_cleanly = True
                    self.stats.bot_hangups += 1
        except Exception as exc:
            self.fail(f"voximplant read: {exc!r}")
        if not (self.ended_cleanly or self.hanging_up or self.ended.is_set()):
            self.fail(f"voximplant ws closed with {self._ws.close_code}")
        self.ended.set()

    def _arm_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """No `turn` events on telephony: a reply is over when its audio stops coming
        and the buffer is about to run dry."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_at(self.playout_end + 0.1, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        self.on_reply_done()

    async def hangup(self) -> None:
        self.hanging_up = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps({"event": "stop", "sequenceNumber": self._chunk + 1}))
                await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        self.ended_cleanly = True
        self.ended.set()


# ============================================================================ audiosocket


class AudioSocketCaller(Caller):
    """Asterisk's AudioSocket (tests/fake_asterisk.py): 3-byte header, 320-byte slin."""

    def __init__(
        self, http: aiohttp.ClientSession, register_url: str, host: str, port: int, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._http = http
        self._register_url = register_url
        self._host, self._port = host, port
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        call = uuid.uuid4()
        # The dialplan's register step (no caller id: the bot asks for the phone number).
        body = {"uuid": str(call), "utterances": self.script}
        async with self._http.post(self._register_url, json=body) as r:
            r.raise_for_status()
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self._writer = writer
        writer.write(struct.pack(">BH", 0x01, 16) + call.bytes)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        w = self._writer
        if w is None or w.is_closing() or self.ended.is_set():
            return
        w.write(b"\x10\x01\x40" + frame)  # 0x10 audio, length 320

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readexactly(3)
                kind, length = head[0], int.from_bytes(head[1:3], "big")
                payload = await reader.readexactly(length) if length else b""
                if kind == 0x10:
                    if length != 320:
                        self.stats.error(f"audiosocket frame of {length} bytes")
                    self.on_bot_audio(length, loop.time(), paced=True)
                    self._arm_idle(loop)
                elif kind == 0x00:
                    self.ended_cleanly = True
                    self.stats.bot_hangups += 1
                    break
                elif kind == 0xFF:
                    self.stats.error(f"audiosocket error frame {payload[:8]!r}")
        except asyncio.IncompleteReadError:
            pass
        except Exception as exc:
            self.fail(f"audiosocket read: {exc!r}")
        if not (self.ended_cleanly or self.hanging_up or self.ended.is_set()):
            self.fail("audiosocket connection lost")
        self.ended.set()

    def _arm_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_later(AUDIOSOCKET_GAP_S * 2, self.on_reply_done)

    async def hangup(self) -> None:
        self.hanging_up = True
        w = self._writer
        if w is not None and not w.is_closing():
            with contextlib.suppress(Exception):
                w.write(b"\x00\x00\x00")
                await w.drain()
                w.close()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader_task, 5)
        self.ended_cleanly = True
        self.ended.set()


# ============================================================================ running


async def _slot(
    make: Callable[[], Caller],
    clock: FrameClock,
    stats: Stats,
    slot: int,
    start_at: float,
    deadline: float,
) -> None:
    """One concurrent call slot: when a call ends before the deadline, dial again."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    n = 0
    while loop.time() < deadline - 1.0:
        caller = make()
        n += 1
        stats.calls_started += 1
        try:
            await caller.connect()
        except Exception as exc:
            stats.dropped_calls += 1
            stats.error(f"connect: {exc!r}")
            await asyncio.sleep(1.0)
            continue
        clock.callers.add(caller)
        try:
            await caller.converse(deadline)
        except Exception as exc:
            caller.fail(f"converse: {exc!r}")
        finally:
            clock.callers.discard(caller)
            if not caller.ended.is_set():
                await caller.hangup()
            caller.count_lost(loop.time())
        if caller.failed is not None:
            stats.dropped_calls += 1
            stats.error(caller.failed)
        else:
            stats.calls_completed += 1


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rate, audio = load(Path(args.audio))
    call_no = itertools.count()
    stats = Stats()
    clock = FrameClock(stats)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    ramp_s = max(0.5, min(15.0, args.calls / 40))
    t0 = loop.time()
    steady = t0 + ramp_s
    deadline = steady + args.duration
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        def make() -> Caller:
            """The next call, with its own booking conversation."""
            kw: dict[str, Any] = {
                "audio": audio,
                "script": conversation(next(call_no)),
                "rate": rate,
                "stats": stats,
            }
            if args.transport == "ws":
                return WsCaller(http, args.url, **kw)
            if args.transport == "voximplant":
                return VoximplantCaller(http, args.url, args.secret, **kw)
            host, _, port = args.url.rpartition(":")
            return AudioSocketCaller(http, args.register_url, host, int(port), **kw)

        ticker = asyncio.create_task(clock.run(stop))
        slots = [
            asyncio.create_task(
                _slot(make, clock, stats, i, t0 + ramp_s * i / args.calls, deadline)
            )
            for i in range(args.calls)
        ]
        await asyncio.sleep(max(0.0, steady - loop.time()))
        cpu0, wall0 = _cpu_s(), time.time()
        clock.measuring = True
        print(f"STEADY {wall0:.3f}", flush=True)
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        cpu1, wall1 = _cpu_s(), time.time()
        clock.measuring = False
        print(f"END {wall1:.3f}", flush=True)
        # Hang up whatever is still talking; bounded in time.
        live = list(clock.callers)
        await asyncio.wait(
            [asyncio.ensure_future(c.hangup()) for c in live] or [asyncio.sleep(0)], timeout=15
        )
        _, pending = await asyncio.wait(slots, timeout=20)
        for t in pending:
            t.cancel()
        stop.set()
        await asyncio.wait([ticker], timeout=2)
    lag = sorted(stats.tick_lag_ms)
    return {
        "transport": args.transport,
        "calls": args.calls,
        "duration_s": round(wall1 - wall0, 2),
        "window": [wall0, wall1],
        "v2v_ms": stats.v2v_ms,
        "v2v_by_line": stats.v2v_by_line,
        "underruns": stats.underruns,
        "underrun_gaps_ms": stats.underrun_gaps_ms[:200],
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "dropped_calls": stats.dropped_calls,
        "calls_started": stats.calls_started,
        "calls_completed": stats.calls_completed,
        "bot_hangups": stats.bot_hangups,
        "replies": stats.replies,
        "no_reply": stats.no_reply,
        "turn_events": stats.turn_events,
        "utterances_said": stats.utterances_said,
        "lost_utterances": stats.lost_utterances,
        "booking_ids": stats.booking_ids,
        # Seconds since the window opened (negative: during the ramp).
        "v2v_timeline": [(round(t - steady, 3), n, v) for t, n, v in stats.v2v_timeline],
        "client_cpu_s_per_s": round((cpu1 - cpu0) / max(1e-9, wall1 - wall0), 3),
        "client_tick_lag_ms": {
            "late_ticks": len(lag),
            "max": round(lag[-1], 1) if lag else 0.0,
            "p99": round(lag[int(0.99 * (len(lag) - 1))], 1) if lag else 0.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m voicebot.bench_load")
    p.add_argument("--transport", choices=["ws", "voximplant", "audiosocket"], default="ws")
    p.add_argument("--url", required=True, help="ws://host:port/ws, ws://.../voximplant, host:port")
    p.add_argument("--audio", required=True, help="caller_<rate>.json from bench_audio")
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--secret", default=os.environ.get("VOICEBOT_VOXIMPLANT_SECRET", ""))
    p.add_argument("--register-url", default="", help="audiosocket: POST /audiosocket/register")
    p.add_argument("--out", required=True)
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
