"""Voximplant media WebSocket: the `/voximplant` endpoint of `voicebot serve`.

A VoxEngine scenario (scripts/voximplant/voicebot.voxengine.js) opens a WebSocket to
us and streams the call with `start` / `media` / `stop` JSON; we answer on the same
socket with our own `start` / `media` / `stop` stream and `{"customEvent": ...}`
control messages (see docs/telephony.md and the research notes).

Wire facts this module is built around:
- encodings and their fixed rate: ULAW/ALAW/PCM8 are 8 kHz, PCM16 is 16 kHz. The
  call's transport runs at that rate, so recognition and synthesis use it directly
  and nothing is resampled. We never send "PCM16" with 8000 (Voximplant rejects it).
- `timestamp` counts samples, `chunk` counts frames; a jump in `chunk` is lost audio,
  replaced by silence so the recognizer's timeline stays true.
- Voximplant plays what we send at 1x and silently drops anything more than 10 s
  ahead, so we keep our lead under `telephony.voximplant.max_lead_ms` and estimate
  playout from what was sent and when (there are no acknowledgements).
- There is no clear in the media protocol: barge-in sends `{"customEvent":"clear"}`
  and the scenario calls `ws.clearMediaBuffer()`.

Error policy (documented in docs/telephony.md):
- no/wrong secret: HTTP 401 before the upgrade (403 when no secret is configured);
- a bad message (malformed JSON, bad base64, unknown event, media before start,
  wrong field types): logged, answered with `{"customEvent":"error","code":...}`,
  dropped; the call goes on. More than `MAX_BAD_MESSAGES` of them: close 1008;
- an encoding we cannot decode, or a rate change mid-call: close 1003;
- a binary frame: close 1003; a message over `server.max_message_bytes`: close 1009
  (aiohttp enforces it); no `start` within `START_TIMEOUT_S`: close 1008.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from voicebot.clock import Clock, RealClock
from voicebot.redact import mask_number
from voicebot.transports import g711
from voicebot.transports.base import ClockPlayout, at_capacity, finish_call

log = logging.getLogger(__name__)

ROUTE = "/voximplant"
MAX_BAD_MESSAGES = 20
START_TIMEOUT_S = 15.0
MAX_CONCEAL_MS = 2000  # one gap is never filled with more silence than this
HANGUP_DRAIN_CAP_S = 10.0
DTMF_DIGITS = frozenset("0123456789*#ABCD")
EMULATOR_UTTERANCES_KEY = "x-emulator-utterances"
PLAYBACK_IDLE_GRACE_S = 1.5  # a playback_idle this soon after our last send is stale


# --------------------------------------------------------------------------- encodings


@dataclass(frozen=True, slots=True)
class Encoding:
    """One wire encoding with the only sample rate Voximplant pairs it with."""

    name: str
    sample_rate: int
    bytes_per_sample: int
    decode: Callable[[bytes], bytes]
    encode: Callable[[bytes], bytes]


def _identity(data: bytes) -> bytes:
    return bytes(data)


ENCODINGS: dict[str, Encoding] = {
    "ULAW": Encoding("ULAW", 8000, 1, g711.ulaw_to_pcm, g711.pcm_to_ulaw),
    "ALAW": Encoding("ALAW", 8000, 1, g711.alaw_to_pcm, g711.pcm_to_alaw),
    "PCM8": Encoding("PCM8", 8000, 2, _identity, _identity),
    "PCM16": Encoding("PCM16", 16000, 2, _identity, _identity),
}


def reply_encoding(inbound: Encoding, preferred: str) -> Encoding:
    """What we send back: the configured encoding when it runs at the call's rate,
    otherwise the caller's own (a 16 kHz PCM16 call is answered in PCM16)."""
    enc = ENCODINGS.get(preferred.upper())
    if enc is not None and enc.sample_rate == inbound.sample_rate:
        return enc
    return inbound


# --------------------------------------------------------------------------- inbound parsing


class ProtocolError(Exception):
    """A message we refuse. `close_code` set: the call cannot go on."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class StartEvent:
    encoding: Encoding
    custom: Mapping[str, Any]
    tag: str | None


@dataclass(frozen=True, slots=True)
class MediaEvent:
    pcm: bytes  # LINEAR16 at the stream's rate, concealment silence already prepended
    concealed_samples: int


@dataclass(frozen=True, slots=True)
class StopEvent:
    media_info: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CustomEvent:
    name: str
    data: Mapping[str, Any]


InboundEvent = StartEvent | MediaEvent | StopEvent | CustomEvent


def _int_field(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError("bad_message", f"{key} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)  # ("²".isdigit() is true, and a 5000-digit int is a DoS)
    raise ProtocolError("bad_message", f"{key} must be an integer")


def parse_custom_parameters(raw: Any) -> dict[str, Any]:
    """`customParameters` arrives as an object or as a JSON string of one."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("bad_message", "customParameters is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", "customParameters must be an object")
    return raw


class InboundDecoder:
    """Turns Voximplant's text frames into events; tracks chunks to conceal losses."""

    def __init__(self) -> None:
        self.encoding: Encoding | None = None
        self.streaming = False  # between a start and its stop
        self._last_chunk: int | None = None
        self._next_ts: int | None = None  # expected timestamp of the next chunk
        self._last_samples = 0

    def decode(self, text: str) -> InboundEvent:
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("bad_json", "message is not valid JSON") from exc
        if not isinstance(msg, dict):
            raise ProtocolError("bad_json", "message must be a JSON object")
        if "customEvent" in msg:
            if "event" in msg:
                raise ProtocolError(
                    "bad_message", "a message carries event or customEvent, not both"
                )
            name = msg["customEvent"]
            if not isinstance(name, str):
                raise ProtocolError("bad_message", "customEvent must be a string")
            return CustomEvent(name, msg)
        event = msg.get("event")
        if event == "start":
            return self._start(msg)
        if event == "media":
            return self._media(msg)
        if event == "stop":
            return self._stop(msg)
        raise ProtocolError("unknown_event", f"unknown event {str(event)[:40]!r}")

    def _start(self, msg: Mapping[str, Any]) -> StartEvent:
        body = msg.get("start")
        if not isinstance(body, dict):
            raise ProtocolError("bad_message", "start without a start object")
        fmt = body.get("mediaFormat")
        if not isinstance(fmt, dict):
            raise ProtocolError("bad_message", "start without mediaFormat")
        name = fmt.get("encoding")
        enc = ENCODINGS.get(name) if isinstance(name, str) else None
        if enc is None:
            raise ProtocolError(
                "unsupported_encoding",
                f"encoding {str(name)[:20]!r} is not one of {sorted(ENCODINGS)}",
                WSCloseCode.UNSUPPORTED_DATA,
            )
        rate = _int_field(fmt, "sampleRate")
        if rate is not None and rate != enc.sample_rate:
            # The pairing is fixed (PCM8 = 8 kHz, PCM16 = 16 kHz, G.711 = 8 kHz): a
            # mismatch means someone will play 8 kHz as 16 kHz. Refuse, don't guess.
            raise ProtocolError(
                "unsupported_encoding",
                f"{enc.name} is {enc.sample_rate} Hz, not {rate}",
                WSCloseCode.UNSUPPORTED_DATA,
            )
        if self.encoding is not None and self.encoding.sample_rate != enc.sample_rate:
            raise ProtocolError(
                "unsupported_encoding",
                "the sample rate cannot change within a call",
                WSCloseCode.UNSUPPORTED_DATA,
            )
        custom_raw = body.get("customParameters", msg.get("customParameters"))
        tag = body.get("tag", msg.get("tag"))
        self.encoding = enc
        self.streaming = True
        self._last_chunk = None
        self._next_ts = None
        return StartEvent(
            enc, parse_custom_parameters(custom_raw), tag if isinstance(tag, str) else None
        )

    def _media(self, msg: Mapping[str, Any]) -> MediaEvent:
        enc = self.encoding
        if enc is None or not self.streaming:
            raise ProtocolError("media_before_start", "media outside a start/stop stream")
        body = msg.get("media")
        if not isinstance(body, dict):
            raise ProtocolError("bad_message", "media without a media object")
        payload = body.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("bad_message", "media without a payload")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("bad_base64", "payload is not valid base64") from exc
        if len(raw) % enc.bytes_per_sample:
            raise ProtocolError("bad_message", f"odd-length {enc.name} payload")
        chunk = _int_field(body, "chunk")
        ts = _int_field(body, "timestamp")
        n_samples = len(raw) // enc.bytes_per_sample
        gap = 0
        if chunk is not None and self._last_chunk is not None:
            if chunk <= self._last_chunk:
                # Late or duplicate: its slot was already filled (with silence).
                return MediaEvent(b"", 0)
            lost = chunk - self._last_chunk - 1
            if lost > 0:
                if ts is not None and self._next_ts is not None and ts > self._next_ts:
                    gap = ts - self._next_ts  # timestamps count samples: exact
                else:
                    gap = lost * self._last_samples
                gap = min(gap, g711.samples(enc.sample_rate, MAX_CONCEAL_MS))
        if chunk is not None:
            self._last_chunk = chunk
        self._last_samples = n_samples
        self._next_ts = None if ts is None else ts + n_samples
        pcm = enc.decode(raw)
        if gap:
            pcm = g711.silence(gap * g711.SAMPLE_WIDTH) + pcm
        return MediaEvent(pcm, gap)

    def _stop(self, msg: Mapping[str, Any]) -> StopEvent:
        body = msg.get("stop")
        info = body.get("mediaInfo") if isinstance(body, dict) else None
        self.streaming = False
        return StopEvent(info if isinstance(info, dict) else {})


# --------------------------------------------------------------------------- outbound encoding


class OutboundEncoder:
    """Our stream back to the call: one untagged start, media with running counters, stop.

    Untagged on purpose: a tagged stream is not bound to the scenario's untagged
    `ws.sendMediaTo(call)`.
    """

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self._seq = 0
        self.chunk = 0
        self.timestamp = 0  # samples sent so far
        self.bytes_sent = 0
        self.started = False

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def start(self) -> dict[str, Any]:
        self.started = True
        return {
            "event": "start",
            "sequenceNumber": self._next_seq(),
            "start": {
                "mediaFormat": {
                    "encoding": self.encoding.name,
                    "sampleRate": self.encoding.sample_rate,
                }
            },
        }

    def media(self, pcm: bytes) -> dict[str, Any]:
        data = self.encoding.encode(pcm)
        msg = {
            "event": "media",
            "sequenceNumber": self._next_seq(),
            "media": {
                "chunk": self.chunk,
                "timestamp": self.timestamp,
                "payload": base64.b64encode(data).decode("ascii"),
            },
        }
        self.chunk += 1
        self.timestamp += len(pcm) // g711.SAMPLE_WIDTH
        self.bytes_sent += len(data)
        return msg

    def stop(self) -> dict[str, Any]:
        duration_ms = round(self.timestamp * 1000 / self.encoding.sample_rate)
        return {
            "event": "stop",
            "sequenceNumber": self._next_seq(),
            "stop": {"mediaInfo": {"bytesSent": self.bytes_sent, "duration": duration_ms}},
        }


# --------------------------------------------------------------------------- transport


class VoxPlayout:
    """Playout = audio queued locally plus a 1x clock over what was actually sent."""

    def __init__(self, clock: Clock, sample_rate: int, pending_bytes: Callable[[], int]) -> None:
        self.sent = ClockPlayout(clock, sample_rate)
        self._rate = sample_rate
        self._pending = pending_bytes

    def lead_ms(self) -> float:
        """How far the far end's buffer runs ahead of what it has played."""
        return self.sent.queued_ms() - self.sent.played_ms()

    def queued_ms(self) -> float:
        return self.sent.queued_ms() + g711.pcm_ms(self._pending(), self._rate)

    def played_ms(self) -> float:
        return self.sent.played_ms()

    def is_playing(self) -> bool:
        return self.played_ms() < self.queued_ms()


Sender = Callable[[Mapping[str, Any]], Any]


class VoximplantTransport:
    """CallTransport over one Voximplant media WebSocket.

    Bot audio is cut into 20 ms frames and sent as soon as the lead over real time
    allows (`max_lead_ms`), deadlines computed from the absolute playout clock so
    nothing drifts.
    """

    kind = "voximplant"

    def __init__(
        self,
        send_json: Callable[[Mapping[str, Any]], Any],
        close: Callable[[], Any],
        encoding: Encoding,
        *,
        max_lead_ms: float = 2000.0,
        clock: Clock | None = None,
    ) -> None:
        self._send_json = send_json
        self._close = close
        self.encoder = OutboundEncoder(encoding)
        self.sample_rate = encoding.sample_rate
        self.max_lead_ms = float(max_lead_ms)
        self._clock = clock or RealClock()
        self._queue = bytearray()
        self._frame = g711.pcm_bytes(self.sample_rate)
        self.playout = VoxPlayout(self._clock, self.sample_rate, lambda: len(self._queue))
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.closed = False
        self.max_lead_seen_ms = 0.0
        self.clears = 0
        self._last_send_at = float("-inf")

    # -- lifecycle

    async def open(self) -> None:
        """Send our stream's start, so the scenario's MEDIA_STARTED fires before audio."""
        await self._send(self.encoder.start())
        self._sender = asyncio.create_task(self._send_loop(), name="voximplant-sender")

    async def aclose(self) -> None:
        """Stop sending; the socket itself is closed by the handler."""
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        self._queue.clear()

    # -- CallTransport

    async def play(self, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        if len(pcm) % g711.SAMPLE_WIDTH:
            log.warning("voximplant: dropping a trailing odd byte of bot audio")
            pcm = pcm[:-1]
        self._queue += pcm
        self._wake.set()

    async def clear(self) -> None:
        if self.closed:
            return
        async with self._lock:
            self._queue.clear()
            self.playout.sent.clear()
            self.clears += 1
            await self._send_unlocked({"customEvent": "clear"})

    async def hangup(self, reason: str) -> None:
        if self.closed:
            return
        # Let what was already said reach the caller (e.g. the goodbye), within bounds.
        deadline = self._clock.monotonic() + HANGUP_DRAIN_CAP_S
        while self.playout.is_playing() and self._clock.monotonic() < deadline:
            if self._sender is None or self._sender.done():
                break
            await self._clock.sleep(0.02)
        await self.aclose()
        with contextlib.suppress(Exception):
            async with self._lock:
                await self._send_unlocked(self.encoder.stop())
                await self._send_unlocked({"customEvent": "hangup", "reason": reason})
        await self._close()

    async def send_event(self, event: Mapping[str, Any]) -> None:
        # The scenario needs audio and control only; transcripts stay server-side.
        return None

    # -- sending

    async def _send(self, msg: Mapping[str, Any]) -> None:
        async with self._lock:
            await self._send_unlocked(msg)

    async def _send_unlocked(self, msg: Mapping[str, Any]) -> None:
        await self._send_json(msg)

    async def _send_loop(self) -> None:
        frame_ms = g711.pcm_ms(self._frame, self.sample_rate)
        while not self.closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            lead = self.playout.lead_ms()
            size = min(self._frame, len(self._queue))
            this_ms = g711.pcm_ms(size, self.sample_rate) if size else frame_ms
            excess = lead + this_ms - self.max_lead_ms
            if excess > 0:
                # The deadline comes from the absolute playout clock: no drift.
                await self._clock.sleep(excess / 1000)
                continue
            async with self._lock:
                if not self._queue:  # cleared while we waited for the lock
                    continue
                pcm = bytes(self._queue[:size])
                del self._queue[:size]
                try:
                    await self._send_unlocked(self.encoder.media(pcm))
                except Exception as exc:  # the peer went away: the handler cleans up
                    log.info("voximplant: send failed (%s); stopping output", type(exc).__name__)
                    self.closed = True
                    return
                self.playout.sent.add(len(pcm))
                self._last_send_at = self._clock.monotonic()
                self.max_lead_seen_ms = max(self.max_lead_seen_ms, self.playout.lead_ms())

    def playback_idle(self) -> None:
        """The scenario's MEDIA_ENDED: the far end has nothing left to play.

        It arrives about a second late; if we sent audio since, it speaks of an older
        reply and must not mark the new one as played."""
        if self._clock.monotonic() - self._last_send_at < PLAYBACK_IDLE_GRACE_S:
            return
        if not self._queue and self.playout.sent.is_playing():
            self.playout.sent.clear()


# --------------------------------------------------------------------------- the endpoint


_CALLER_KEYS = ("caller_id", "callerid", "callerId", "caller", "from")
_CALLED_KEYS = ("called_id", "did", "destination", "number", "called", "to")
_CONSUMED = frozenset((*_CALLER_KEYS, *_CALLED_KEYS, EMULATOR_UTTERANCES_KEY))


def _first(custom: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = custom.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)[:64]
    return None


def _metadata(custom: Mapping[str, Any], query: Mapping[str, str]) -> dict[str, str]:
    meta = {"call": query["call"][:128]} if "call" in query else {}
    for key, value in list(custom.items())[:32]:
        if key in _CONSUMED or isinstance(value, (dict, list)):
            continue
        meta[str(key)[:64]] = str(value)[:256]
    return meta


def _emulator_metadata(
    runtime: Any, custom: Mapping[str, Any], call_id: str
) -> tuple[tuple[str, str], ...]:
    """Emulator hooks only (offline, or `emulator.client_scripts`): let a test client script what the emulator 'recognizes'."""
    raw = custom.get(EMULATOR_UTTERANCES_KEY)
    if raw is None or not getattr(runtime, "emulator_hooks", False):
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        return ()
    return (
        ("x-emulator-utterances-bin", json.dumps(raw, ensure_ascii=False)),
        ("x-emulator-script-id", call_id),
    )


def check_secret(request: web.Request, secret: str) -> bool:
    """`Authorization: Bearer <secret>` or `?token=<secret>`, in constant time."""
    offered = ""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        offered = auth[7:].strip()
    elif "token" in request.query:
        offered = request.query["token"]
    return bool(secret) and hmac.compare_digest(offered.encode(), secret.encode())


@dataclass
class CallStats:
    """What tests and logs want to know about a finished call."""

    media_in: int = 0
    concealed_samples: int = 0
    bad_messages: int = 0
    close_code: int | None = None
    summary: Mapping[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


class VoximplantCall:
    """One WebSocket connection: parse, create the session on `start`, clean up."""

    def __init__(self, ws: web.WebSocketResponse, runtime: Any, query: Mapping[str, str]) -> None:
        self.ws = ws
        self.runtime = runtime
        self.query = query
        self.cfg = runtime.cfg
        self.decoder = InboundDecoder()
        self.transport: VoximplantTransport | None = None
        self.session: Any = None
        self._run_task: asyncio.Task[Any] | None = None
        self.stats = CallStats()
        self.call_id = query.get("call", "")[:128] or f"vox-{uuid.uuid4().hex[:12]}"
        self.finished = asyncio.Event()  # set once every task of this call is gone

    async def _send_json(self, msg: Mapping[str, Any]) -> None:
        await self.ws.send_str(json.dumps(msg, separators=(",", ":")))

    async def _close(self, code: int = WSCloseCode.OK, message: str = "") -> None:
        if self.stats.close_code is None:
            self.stats.close_code = code
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=message.encode()[:120])

    async def _error(self, err: ProtocolError) -> None:
        self.stats.bad_messages += 1
        self.stats.errors.append(err.code)
        log.warning("voximplant %s: %s (%s)", self.call_id, err.code, err)
        with contextlib.suppress(Exception):
            await self._send_json({"customEvent": "error", "code": err.code, "message": str(err)})
        if err.close_code is not None:
            await self._close(err.close_code, err.code)
        elif self.stats.bad_messages > MAX_BAD_MESSAGES:
            await self._close(WSCloseCode.POLICY_VIOLATION, "too many bad messages")

    async def serve(self) -> CallStats:
        try:
            await self._read_loop()
        except Exception:
            # A bug on our side ends this call cleanly (1011) and no other.
            log.exception("voximplant %s: internal error", self.call_id)
            self.stats.errors.append("internal")
            with contextlib.suppress(Exception):
                await self._close(WSCloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self._finish()
        return self.stats

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start_deadline = loop.time() + START_TIMEOUT_S
        while not self.ws.closed:
            timeout = None if self.session else max(0.01, start_deadline - loop.time())
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                await self._error(
                    ProtocolError("no_start", "no start in time", WSCloseCode.POLICY_VIOLATION)
                )
                return
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._error(
                    ProtocolError(
                        "binary_frame",
                        "binary frames are not part of the protocol",
                        WSCloseCode.UNSUPPORTED_DATA,
                    )
                )
            elif msg.type == WSMsgType.ERROR:
                self.stats.errors.append("ws_error")
                log.warning("voximplant %s: websocket error: %s", self.call_id, msg.data)
                self.stats.close_code = self.ws.close_code
                return
            else:  # CLOSE / CLOSING / CLOSED
                return

    async def _on_text(self, text: str) -> None:
        try:
            event = self.decoder.decode(text)
        except ProtocolError as err:
            await self._error(err)
            return
        if isinstance(event, MediaEvent):
            self.stats.media_in += 1
            self.stats.concealed_samples += event.concealed_samples
            if event.pcm and self.session is not None:
                self.session.feed_audio(event.pcm)
        elif isinstance(event, StartEvent):
            await self._on_start(event)
        elif isinstance(event, StopEvent):
            log.info("voximplant %s: caller stream stopped", self.call_id)
        else:
            await self._on_custom(event)

    async def _on_start(self, event: StartEvent) -> None:
        if self.session is not None:
            log.info("voximplant %s: new caller stream (%s)", self.call_id, event.encoding.name)
            return
        vcfg = self.cfg.telephony.voximplant
        out = reply_encoding(event.encoding, vcfg.encoding)
        self.transport = VoximplantTransport(
            self._send_json,
            lambda: self._close(WSCloseCode.OK, "hangup"),
            out,
            max_lead_ms=vcfg.max_lead_ms,
            clock=getattr(self.runtime, "clock", None),
        )
        caller = _first(event.custom, _CALLER_KEYS)
        called = _first(event.custom, _CALLED_KEYS)
        log.info(
            "voximplant %s: call from %s to %s, %s %d Hz in, %s out",
            self.call_id,
            mask_number(caller),
            mask_number(called),
            event.encoding.name,
            event.encoding.sample_rate,
            out.name,
        )
        self.session = self.runtime.new_session(
            self.transport,
            channel="voximplant",
            caller_id=caller,
            called_id=called,
            metadata=_metadata(event.custom, self.query),
            stt_metadata=_emulator_metadata(self.runtime, event.custom, self.call_id),
        )
        await self.transport.open()
        self._run_task = asyncio.create_task(self._run_session(), name="voximplant-session")

    async def _on_custom(self, event: CustomEvent) -> None:
        name = event.name
        if name == "dtmf":
            digit = event.data.get("digit", event.data.get("tone"))
            if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                await self._error(ProtocolError("bad_message", "dtmf without a valid digit"))
            elif self.session is not None:
                self.session.feed_dtmf(digit.upper())
        elif name == "hangup":
            log.info("voximplant %s: scenario reports hang-up", self.call_id)
            await self._close(WSCloseCode.OK, "hangup")
        elif name == "playback_idle":
            if self.transport is not None:
                self.transport.playback_idle()
        elif name in ("media_started", "media_ended"):
            log.debug("voximplant %s: %s", self.call_id, name)
        else:
            await self._error(ProtocolError("unknown_event", f"unknown customEvent {name[:40]!r}"))

    async def _run_session(self) -> None:
        try:
            self.stats.summary = await self.session.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("voximplant %s: session failed", self.call_id)
            await self._close(WSCloseCode.INTERNAL_ERROR, "session failed")
            return
        await self._close(WSCloseCode.OK, "call ended")

    async def _finish(self) -> None:
        """The socket is gone (either side): end the session, stop every task."""
        await finish_call(
            self.runtime, self.session, self._run_task, self.transport, f"voximplant {self.call_id}"
        )
        await self._close(WSCloseCode.OK, "")
        log.info("voximplant %s: closed (code %s)", self.call_id, self.stats.close_code)
        self.finished.set()


_ACTIVE: set[asyncio.Task[CallStats]] = set()


def make_handler(
    runtime: Any, on_call: Callable[[VoximplantCall], None] | None = None
) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        secret = runtime.cfg.telephony.voximplant.secret
        if not secret:
            log.error(
                "voximplant: refusing a connection: no shared secret configured "
                "(set telephony.voximplant.secret or VOICEBOT_VOXIMPLANT_SECRET)"
            )
            raise web.HTTPForbidden(text="voximplant endpoint has no secret configured")
        if not check_secret(request, secret):
            log.warning("voximplant: refused a connection from %s: bad secret", request.remote)
            raise web.HTTPUnauthorized(
                text="bad or missing secret", headers={"WWW-Authenticate": "Bearer"}
            )
        if at_capacity(runtime):
            log.warning(
                "voximplant: refusing a call: all %d slots busy", runtime.cfg.server.max_sessions
            )
            raise web.HTTPServiceUnavailable(text="busy", headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(
            protocols=("chat",),
            max_msg_size=runtime.cfg.server.max_message_bytes,
            autoping=True,
        )
        await ws.prepare(request)
        call = VoximplantCall(ws, runtime, dict(request.query))
        if on_call is not None:
            on_call(call)
        # aiohttp cancels the handler when the peer drops the connection; the call
        # runs in its own task so its cleanup (session end, sender stop) always completes.
        task = asyncio.create_task(call.serve(), name="voximplant-call")
        _ACTIVE.add(task)
        task.add_done_callback(_ACTIVE.discard)
        await asyncio.shield(task)
        return ws

    return handle


def add_routes(app: web.Application, runtime: Any) -> None:
    """Mount `GET /voximplant` (the media WebSocket) on `app`."""
    app.router.add_get(ROUTE, make_handler(runtime))
