"""A fake VoxEngine scenario (WebSocket client) and a fake call session.

`FakeVoximplant` behaves like Voximplant's side of the media WebSocket: it sends the
caller's `start`/`media`/`stop` (20 ms frames, paced against absolute deadlines when
asked), and plays the bot's stream into a simulated 10 s Voximplant buffer, checking
every wire invariant on the way (untagged stream, chunk +1, timestamp = running
sample count, known encoding with its fixed rate).

`telephony_host()`/`FakeSession` stand in for the engine so the protocol layers can be
tested alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from tests.fake_host import FakeHost
from voicebot.config import Config
from voicebot.transports import g711

VOX_BUFFER_MS = 10_000  # Voximplant drops audio further ahead than this
RATES = {"ULAW": 8000, "ALAW": 8000, "PCM8": 8000, "PCM16": 16000}


# --------------------------------------------------------------------------- audio helpers


def encode(pcm: bytes, encoding: str) -> bytes:
    if encoding == "ULAW":
        return g711.pcm_to_ulaw(pcm)
    if encoding == "ALAW":
        return g711.pcm_to_alaw(pcm)
    return pcm


def decode(data: bytes, encoding: str) -> bytes:
    if encoding == "ULAW":
        return g711.ulaw_to_pcm(data)
    if encoding == "ALAW":
        return g711.alaw_to_pcm(data)
    return data


def tone(ms: int, rate: int = 8000, freq: float = 440.0, amp: int = 8000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype("<i2").tobytes()


def espeak_pcm(text: str, rate: int = 8000, voice: str = "ru") -> bytes:
    """A synthesized caller: espeak-ng, resampled by sox to the telephony rate."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "170", "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    # espeak writes 0x7fff... size placeholders; sox's --ignore-length copes.
    return subprocess.run(
        [
            "sox",
            "--ignore-length",
            "-t",
            "wav",
            "-",
            "-r",
            str(rate),
            "-b",
            "16",
            "-c",
            "1",
            "-e",
            "signed-integer",
            "-t",
            "raw",
            "-",
        ],
        input=wav,
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout


def rms(pcm: bytes) -> float:
    a = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(a * a))) if len(a) else 0.0


# --------------------------------------------------------------------------- fake engine


class FakeSession:
    """Records what the transport feeds in; optionally greets with a tone."""

    def __init__(
        self, transport: Any, greet_ms: int = 0, greet_pcm: bytes = b"", **kwargs: Any
    ) -> None:
        self.transport = transport
        self.kwargs = kwargs
        self.audio = bytearray()
        self.dtmf: list[str] = []
        self.texts: list[str] = []
        self.ended: str | None = None
        self.greet_ms = greet_ms
        self.greet_pcm = greet_pcm
        self._end = asyncio.Event()
        self.session_id = f"fake-{id(self):x}"

    async def run(self) -> Mapping[str, Any]:
        if self.greet_pcm:
            await self.transport.play(self.greet_pcm)
        if self.greet_ms:
            await self.transport.play(tone(self.greet_ms, self.transport.sample_rate))
        await self._end.wait()
        return {"reason": self.ended, "audio_bytes": len(self.audio)}

    def feed_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    def feed_text(self, text: str) -> None:
        self.texts.append(text)

    def feed_dtmf(self, digit: str) -> None:
        self.dtmf.append(digit)

    def end(self, reason: str = "caller_hangup") -> None:
        if self.ended is None:
            self.ended = reason
        self._end.set()


def telephony_host(
    cfg: Config | None = None, greet_ms: int = 0, greet_pcm: bytes = b""
) -> FakeHost:
    """A fake host whose calls are `FakeSession`s (optionally greeting with audio)."""

    def make(host: FakeHost, transport: Any, record: dict[str, Any]) -> FakeSession:
        return FakeSession(transport, greet_ms, greet_pcm, **record)

    return FakeHost(cfg, make_session=make)


# --------------------------------------------------------------------------- fake Voximplant


@dataclass
class BotStream:
    """What the server sent us, checked message by message."""

    start: dict[str, Any] | None = None
    encoding: str | None = None
    pcm: bytearray = field(default_factory=bytearray)
    media: int = 0
    stop: dict[str, Any] | None = None
    customs: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic, pcm)
    max_lead_ms: float = 0.0
    dropped_ms: float = 0.0  # audio beyond Voximplant's 10 s buffer
    violations: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # everything, in order


class FakeVoximplant:
    """The Voximplant side of one call."""

    def __init__(
        self,
        url: str,
        *,
        encoding: str = "ULAW",
        token: str | None = None,
        bearer: str | None = None,
        custom: Mapping[str, Any] | str | None = None,
        tag: str = "caller",
    ) -> None:
        self.url = url
        self.encoding = encoding
        self.rate = RATES.get(encoding, 8000)
        self.token = token
        self.bearer = bearer
        self.custom = custom
        self.tag = tag
        self.bot = BotStream()
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._seq = 0
        self._chunk = 0
        self._ts = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.buffer_end = 0.0  # when the simulated Voximplant buffer runs dry
        self.last_sent_at = 0.0
        self.clear_times: list[float] = []

    async def connect(self) -> None:
        self.http = aiohttp.ClientSession()
        params = {"token": self.token} if self.token is not None else None
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer is not None else None
        try:
            self.ws = await self.http.ws_connect(
                self.url, params=params, headers=headers, protocols=("chat",), max_msg_size=0
            )
        except BaseException:
            await self.http.close()
            raise
        self._reader = asyncio.create_task(self._read())

    async def aclose(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        if self.ws is not None:
            self.close_code = self.ws.close_code
        if self.http is not None:
            await self.http.close()

    async def __aenter__(self) -> FakeVoximplant:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sending

    async def send_raw(self, text: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(text, bytes):
            await self.ws.send_bytes(text)
        else:
            await self.ws.send_str(text)

    async def send(self, msg: Mapping[str, Any]) -> None:
        await self.send_raw(json.dumps(msg, ensure_ascii=False))

    async def start(self, sample_rate: int | None = None) -> None:
        start: dict[str, Any] = {
            "mediaFormat": {"encoding": self.encoding, "sampleRate": sample_rate or self.rate},
            "tag": self.tag,
        }
        if self.custom is not None:
            start["customParameters"] = self.custom
        await self.send({"event": "start", "sequenceNumber": self._next_seq(), "start": start})

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    async def media(self, pcm: bytes, *, skip_chunks: int = 0) -> None:
        """One frame of caller audio; `skip_chunks` simulates lost packets before it."""
        samples = len(pcm) // 2
        if skip_chunks:
            self._chunk += skip_chunks
            self._ts += skip_chunks * samples
        payload = base64.b64encode(encode(pcm, self.encoding)).decode()
        await self.send(
            {
                "event": "media",
                "sequenceNumber": self._next_seq(),
                "media": {
                    "chunk": self._chunk,
                    "timestamp": self._ts,
                    "payload": payload,
                    "tag": self.tag,
                },
            }
        )
        self._chunk += 1
        self._ts += samples
        self.last_sent_at = time.monotonic()

    async def stream(self, pcm: bytes, *, realtime: bool = True, frame_ms: int = 20) -> None:
        """Caller audio in 20 ms frames, paced against absolute deadlines."""
        size = g711.pcm_bytes(self.rate, frame_ms)
        t0 = time.monotonic()
        for i, off in enumerate(range(0, len(pcm), size)):
            frame = pcm[off : off + size]
            if len(frame) < size:
                frame += bytes(size - len(frame))
            if realtime:
                delay = t0 + i * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.media(frame)

    async def stop(self) -> None:
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "stop": {
                    "mediaInfo": {"bytesSent": self._ts, "duration": self._ts * 1000 // self.rate},
                    "tag": self.tag,
                },
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send({"customEvent": "dtmf", "digit": digit})

    # -- receiving: the scenario's side of ws.sendMediaTo(call)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.bot.violations.append("binary frame from server")
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    def _on_text(self, text: str) -> None:
        b = self.bot
        msg = json.loads(text)
        b.messages.append(msg)
        now = time.monotonic()
        if "customEvent" in msg:
            if "event" in msg:
                b.violations.append("event and customEvent in one message")
            b.customs.append(msg)
            if msg["customEvent"] == "clear":
                self.buffer_end = now  # ws.clearMediaBuffer()
                self.clear_times.append(now)
            return
        event = msg.get("event")
        if "sequenceNumber" in msg:
            b.seqs.append(msg["sequenceNumber"])
        if event == "start":
            fmt = msg["start"]["mediaFormat"]
            if "tag" in msg["start"] or "tag" in msg:
                b.violations.append("server stream is tagged")
            if RATES.get(fmt.get("encoding")) != fmt.get("sampleRate"):
                b.violations.append(f"bad encoding/rate pair {fmt}")
            b.start, b.encoding = msg, fmt["encoding"]
        elif event == "media":
            if b.encoding is None:
                b.violations.append("media before start")
                return
            m = msg["media"]
            if "tag" in m:
                b.violations.append("media is tagged")
            if m["chunk"] != b.media:
                b.violations.append(f"chunk {m['chunk']} != {b.media}")
            pcm = decode(base64.b64decode(m["payload"]), b.encoding)
            if m["timestamp"] != len(b.pcm) // 2:
                b.violations.append(f"timestamp {m['timestamp']} != {len(b.pcm) // 2}")
            b.media += 1
            b.pcm += pcm
            b.arrivals.append((now, pcm))
            ms = g711.pcm_ms(len(pcm), RATES[b.encoding])
            start = max(self.buffer_end, now)
            lead = (start + ms / 1000 - now) * 1000
            if lead > VOX_BUFFER_MS:
                b.dropped_ms += ms
            else:
                self.buffer_end = start + ms / 1000
            b.max_lead_ms = max(b.max_lead_ms, lead)
        elif event == "stop":
            b.stop = msg
        else:
            b.violations.append(f"unknown event {event!r}")

    def first_audio_after(self, t: float, min_rms: float = 100.0) -> float | None:
        """Arrival time of the first non-silent bot frame after monotonic time `t`."""
        for at, pcm in self.bot.arrivals:
            if at >= t and rms(pcm) >= min_rms:
                return at
        return None


# --------------------------------------------------------------------------- a scripted caller


@dataclass
class TurnTiming:
    line: str
    last_word_at: float  # monotonic time the caller's last voiced frame was sent
    bot_audio_at: float | None = None  # first non-silent bot audio that arrived after it

    @property
    def response_ms(self) -> float | None:
        if self.bot_audio_at is None:
            return None
        return (self.bot_audio_at - self.last_word_at) * 1000


class CallEnded(Exception):
    """The other side closed the line."""


class ScriptedCaller:
    """A phone's microphone: a 20 ms frame every 20 ms (absolute deadlines), silence
    between lines; each line starts once the bot has answered and gone quiet."""

    def __init__(
        self,
        send_frame: Any,
        bot_quiet_since: Any,
        bot_spoke_after: Any,
        *,
        rate: int = 8000,
        settle_s: float = 0.5,
        max_wait_s: float = 25.0,
        voiced_rms: float = 300.0,
    ) -> None:
        self.send_frame = send_frame  # async (pcm) -> None
        self.bot_quiet_since = (
            bot_quiet_since  # () -> monotonic time the bot's audio ended, or None if playing
        )
        self.first_bot_audio_after = (
            bot_spoke_after  # (t) -> arrival time of bot audio after t, or None
        )
        self.rate = rate
        self.settle_s = settle_s
        self.max_wait_s = max_wait_s
        self.voiced_rms = voiced_rms
        self.turns: list[TurnTiming] = []
        self.hung_up_by_bot = False
        self.barge_in_at: float | None = None
        self._frame = g711.pcm_bytes(rate)
        self._t0 = 0.0
        self._n = 0

    async def _tick(self, pcm: bytes | None = None) -> None:
        delay = self._t0 + self._n * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.2:  # we stalled: restart the schedule rather than burst
            self._t0, self._n = time.monotonic(), 0
        self._n += 1
        try:
            await self.send_frame(pcm if pcm is not None else bytes(self._frame))
        except (ConnectionError, OSError) as exc:
            raise CallEnded from exc

    async def _wait_bot_turn(self, since: float) -> None:
        """Silence until the bot has said something after `since` and gone quiet."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the bot did not answer")
            quiet = self.bot_quiet_since()
            if (
                self.first_bot_audio_after(since) is not None
                and quiet is not None
                and time.monotonic() - quiet >= self.settle_s
            ):
                return
            await self._tick()

    async def say(self, line: str, pcm: bytes, *, wait_answer: bool = True) -> TurnTiming:
        last_voiced = time.monotonic()
        for off in range(0, len(pcm), self._frame):
            frame = pcm[off : off + self._frame]
            frame += bytes(self._frame - len(frame))
            await self._tick(frame)
            if rms(frame) >= self.voiced_rms:
                last_voiced = time.monotonic()
        turn = TurnTiming(line, last_voiced)
        self.turns.append(turn)
        if wait_answer:
            await self._wait_bot_turn(last_voiced)
        return turn

    async def _wait_bot_talking(self, since: float, for_s: float) -> None:
        """Silence until the bot has been answering for `for_s` (to interrupt it)."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("the bot did not answer")
            started = self.first_bot_audio_after(since)
            if started is not None and time.monotonic() - started >= for_s:
                return
            await self._tick()

    async def run(
        self,
        lines: list[tuple[str, bytes]],
        *,
        barge_in_line: int | None = None,
        barge_after_s: float = 1.5,
    ) -> list[TurnTiming]:
        """Talk through `lines`; line `barge_in_line` interrupts the bot's previous
        answer `barge_after_s` into it. Returns early if the bot hangs up."""
        self._t0, self._n = time.monotonic(), 0
        try:
            await self._wait_bot_turn(0.0)  # the greeting
            for i, (text, pcm) in enumerate(lines):
                turn = await self.say(text, pcm, wait_answer=False)
                if barge_in_line is not None and i + 1 == barge_in_line:
                    await self._wait_bot_talking(turn.last_word_at, barge_after_s)
                    self.barge_in_at = time.monotonic()
                else:
                    await self._wait_bot_turn(turn.last_word_at)
        except CallEnded:
            self.hung_up_by_bot = True
        return self.turns
