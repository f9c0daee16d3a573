"""Voximplant media WebSocket wire codec: JSON text frames <-> typed messages, no I/O.

Wire facts (docs/telephony.md, /work/shared/docs Voximplant notes):
- encodings and their fixed rate: ULAW/ALAW/PCM8 are 8 kHz, PCM16 is 16 kHz. We never
  send "PCM16" with 8000 (Voximplant rejects it).
- `timestamp` counts samples, `chunk` counts frames; a jump in `chunk` is lost audio,
  replaced by silence (at most `MAX_CONCEAL_MS`) so the recognizer's timeline stays true.
  A `chunk` equal to the last, or a few behind it, is a duplicate or a late frame whose
  slot was already filled; one further back (the media stream restarted, a new leg) is
  a new run, accepted and reported once (`MediaEvent.restarted`) — never a call that
  drops every later frame.
- Encoding names: also `audio/x-mulaw` (the MIME name some scenarios send, = ULAW) and
  PCM16 with `sampleRate: 8000` (16-bit linear at 8 kHz, = PCM8).
- `customParameters` arrives as an object or as a JSON string of one.
- Control messages are `{"customEvent": name, ...}`; one message never carries both
  `event` and `customEvent`.

Everything here is a pure function or a small state machine over messages, so it can
be fuzzed without a socket. Errors are `ProtocolError`s with the code sent back to the
scenario and, for unrecoverable ones, a WebSocket close code.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSCloseCode

from voicebot.transports import g711
from voicebot.transports.errors import ProtocolError

__all__ = ["ProtocolError"]

MAX_CONCEAL_MS = 2000  # one gap is never filled with more silence than this
LATE_CHUNKS = 3  # a chunk at most this far behind the last is late, not a restart
DTMF_DIGITS = frozenset("0123456789*#ABCD")
EMULATOR_UTTERANCES_KEY = "x-emulator-utterances"


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


# Other names for the same wire formats.
ENCODING_ALIASES: dict[str, str] = {"audio/x-mulaw": "ULAW", "audio/pcmu": "ULAW"}


def inbound_encoding(name: object, rate: int | None) -> Encoding | None:
    """The encoding a `start` names (aliases folded), or None if we do not take it.
    PCM16 at 8000 Hz is 16-bit linear at 8 kHz: PCM8's format."""
    if not isinstance(name, str):
        return None
    key = ENCODING_ALIASES.get(name.lower(), name)  # MIME names are case-insensitive
    if key == "PCM16" and rate == 8000:
        return ENCODINGS["PCM8"]
    return ENCODINGS.get(key)


def reply_encoding(inbound: Encoding, preferred: str) -> Encoding:
    """What we send back: the configured encoding when it runs at the call's rate,
    otherwise the caller's own (a 16 kHz PCM16 call is answered in PCM16)."""
    enc = ENCODINGS.get(preferred.upper())
    if enc is not None and enc.sample_rate == inbound.sample_rate:
        return enc
    return inbound


# --------------------------------------------------------------------------- inbound parsing


@dataclass(frozen=True, slots=True)
class StartEvent:
    encoding: Encoding
    custom: Mapping[str, Any]
    tag: str | None


@dataclass(frozen=True, slots=True)
class MediaEvent:
    pcm: bytes  # LINEAR16 at the stream's rate, concealment silence already prepended
    concealed_samples: int
    restarted: bool = False  # the chunk numbering went back: a new run starts here


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


def _json_object(text: str, code: str, what: str) -> dict[str, Any]:
    """`text` parsed as one JSON object, or `ProtocolError(code)` naming `what`
    (deep nesting counts as invalid). orjson, because this runs for every 20 ms frame of
    every call and parses a media message in a fifth of the stdlib's time."""
    try:
        obj = orjson.loads(text)
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ProtocolError(code, f"{what} is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(code, f"{what} must be a JSON object")
    return obj


def parse_custom_parameters(raw: Any) -> dict[str, Any]:
    """`customParameters` arrives as an object or as a JSON string of one."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        return _json_object(raw, "bad_message", "customParameters")
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", "customParameters must be a JSON object")
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
        """One text frame -> its event; raises `ProtocolError` for what we refuse."""
        msg = _json_object(text, "bad_json", "message")
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
        rate = _int_field(fmt, "sampleRate")
        enc = inbound_encoding(name, rate)
        if enc is None:
            raise ProtocolError(
                "unsupported_encoding",
                f"encoding {str(name)[:20]!r} is not one of "
                f"{sorted(ENCODINGS) + sorted(ENCODING_ALIASES)}",
                WSCloseCode.UNSUPPORTED_DATA,
            )
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
        restarted = False
        if chunk is not None and self._last_chunk is not None and chunk <= self._last_chunk:
            if self._last_chunk - chunk <= LATE_CHUNKS:
                # Late or duplicate: its slot was already filled (with silence).
                return MediaEvent(b"", 0)
            # Far behind: the numbering restarted. Take it as a new run.
            restarted = True
            self._last_chunk = None
            self._next_ts = None
        if chunk is not None and self._last_chunk is not None:
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
        return MediaEvent(pcm, gap, restarted)

    def _stop(self, msg: Mapping[str, Any]) -> StopEvent:
        body = msg.get("stop")
        info = body.get("mediaInfo") if isinstance(body, dict) else None
        self.streaming = False
        return StopEvent(info if isinstance(info, dict) else {})


# --------------------------------------------------------------------------- outbound encoding


@dataclass(frozen=True, slots=True)
class StartOut:
    """Our stream's `start`: untagged, with the reply encoding and its fixed rate."""

    seq: int
    encoding: Encoding


@dataclass(frozen=True, slots=True)
class MediaOut:
    """One `media` message: `payload` already in the wire encoding."""

    seq: int
    chunk: int
    timestamp: int  # samples sent before this chunk
    payload: bytes


@dataclass(frozen=True, slots=True)
class StopOut:
    """Our stream's `stop` with its `mediaInfo` totals."""

    seq: int
    bytes_sent: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ControlOut:
    """A `{"customEvent": name, ...}` control message for the scenario (clear,
    hangup, error)."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)


OutboundMessage = StartOut | MediaOut | StopOut | ControlOut


_MEDIA_OUT = (
    '{"event":"media","sequenceNumber":%d,"media":{"chunk":%d,"timestamp":%d,"payload":"%s"}}'
)


def encode_outbound(msg: OutboundMessage) -> str:
    """One outbound message as the compact JSON text frame Voximplant expects."""
    obj: dict[str, Any]
    if isinstance(msg, MediaOut):
        # The hot path (every 20 ms of every call while the bot talks): integers and
        # base64 need no JSON escaping, so the frame is formatted directly, byte for
        # byte what json.dumps(obj, separators=(",", ":")) gives (a fuzz test checks).
        return _MEDIA_OUT % (
            msg.seq,
            msg.chunk,
            msg.timestamp,
            binascii.b2a_base64(msg.payload, newline=False).decode("ascii"),
        )
    if isinstance(msg, StartOut):
        fmt = {"encoding": msg.encoding.name, "sampleRate": msg.encoding.sample_rate}
        obj = {"event": "start", "sequenceNumber": msg.seq, "start": {"mediaFormat": fmt}}
    elif isinstance(msg, StopOut):
        info = {"bytesSent": msg.bytes_sent, "duration": msg.duration_ms}
        obj = {"event": "stop", "sequenceNumber": msg.seq, "stop": {"mediaInfo": info}}
    else:
        obj = {"customEvent": msg.name, **msg.fields}
    return json.dumps(obj, separators=(",", ":"))


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

    def start(self) -> StartOut:
        """The `start` of our stream (sent once, before any media)."""
        self.started = True
        return StartOut(self._next_seq(), self.encoding)

    def media(self, pcm: bytes) -> MediaOut:
        """One chunk of bot audio (LINEAR16 at the encoding's rate)."""
        data = self.encoding.encode(pcm)
        msg = MediaOut(self._next_seq(), self.chunk, self.timestamp, data)
        self.chunk += 1
        self.timestamp += len(pcm) // g711.SAMPLE_WIDTH
        self.bytes_sent += len(data)
        return msg

    def stop(self) -> StopOut:
        """The `stop` of our stream, with what was sent in total."""
        duration_ms = round(self.timestamp * 1000 / self.encoding.sample_rate)
        return StopOut(self._next_seq(), self.bytes_sent, duration_ms)


# --------------------------------------------------------------------------- call parameters


_CALLER_KEYS = ("caller_id", "callerid", "callerId", "caller", "from")
_CALLED_KEYS = ("called_id", "did", "destination", "number", "called", "to")
_CONSUMED = frozenset((*_CALLER_KEYS, *_CALLED_KEYS, EMULATOR_UTTERANCES_KEY))


def _first(custom: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = custom.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)[:64]
    return None


@dataclass(frozen=True, slots=True)
class CallParameters:
    """What the scenario tells us about the call in `customParameters` (and the URL)."""

    caller_id: str | None
    called_id: str | None
    metadata: Mapping[str, str]
    script: tuple[str, ...] | None  # `x-emulator-utterances`: tests and bench only


def call_parameters(custom: Mapping[str, Any], query: Mapping[str, str]) -> CallParameters:
    """Caller id, DID, free-form metadata (bounded) and an emulator script, if any."""
    meta = {"call": query["call"][:128]} if "call" in query else {}
    for key, value in list(custom.items())[:32]:
        if key in _CONSUMED or isinstance(value, (dict, list)):
            continue
        meta[str(key)[:64]] = str(value)[:256]
    return CallParameters(
        _first(custom, _CALLER_KEYS),
        _first(custom, _CALLED_KEYS),
        meta,
        _script(custom.get(EMULATOR_UTTERANCES_KEY)),
    )


def _script(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        return None
    return tuple(raw)


def dtmf_digit(data: Mapping[str, Any]) -> str:
    """The digit of a `dtmf` customEvent (`digit` or `tone`), upper-cased."""
    digit = data.get("digit", data.get("tone"))
    if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ProtocolError("bad_message", "dtmf without a valid digit")
    return digit.upper()
