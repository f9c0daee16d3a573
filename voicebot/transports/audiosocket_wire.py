"""Asterisk AudioSocket wire codec: bytes <-> typed messages, no I/O.

Every message is `type (1 byte) | length (2 bytes, big-endian) | payload`
(Asterisk's res_audiosocket; /work/shared/docs AudioSocket notes):

    0x01 UUID (16 raw bytes, always first)   0x10 audio: slin16 LE, 8 kHz, mono
    0x03 DTMF (1 ASCII byte)                 0x00 hang-up   0xFF error (code byte)
    0x11-0x18 audio: slin16 LE at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz (recent
              Asterisk; the current res_audiosocket docs' numbering)

We answer in the audio kind the call uses, plus 0x00: any other type ends Asterisk's
session. Audio comes in whole 20 ms frames of the kind's rate (Asterisk forwards one
message per frame); any other size — e.g. μ-law bytes labelled 0x10, which would
halve the call's timeline, or an older Asterisk's 0x11 = 16 kHz — is refused with a
`ProtocolError` naming the sizes, as are a payload over the per-type limit and an
unknown type (the connection is closed; other calls go on).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

from voicebot.transports import g711
from voicebot.transports.errors import ProtocolError

__all__ = ["ProtocolError"]

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF

SAMPLE_RATE = 8000
FRAME_BYTES = g711.pcm_bytes(SAMPLE_RATE)  # 320: 20 ms of slin16 at 8 kHz
# Audio kinds and their sample rates (Hz).
AUDIO_KINDS: dict[int, int] = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}


def frame_bytes(kind: int) -> int:
    """Bytes of one 20 ms slin16 frame of an audio kind (320 for 0x10)."""
    return AUDIO_KINDS[kind] * 20 // 1000 * 2


# Largest payload accepted per type: anything bigger is a broken or hostile peer.
MAX_PAYLOAD = {
    KIND_HANGUP: 64,
    KIND_UUID: 16,
    KIND_DTMF: 1,
    KIND_ERROR: 64,
    # up to 200 ms per message (ptime is usually 20), capped by the 16-bit length
    **{k: min(0xFFFF, frame_bytes(k) * 10) for k in AUDIO_KINDS},
}
DTMF_DIGITS = frozenset("0123456789*#ABCD")

_HEADER = struct.Struct(">BH")
HEADER_BYTES = _HEADER.size


@dataclass(frozen=True, slots=True)
class UuidMessage:
    """0x01: the call's UUID (canonical text form)."""

    uuid: str


@dataclass(frozen=True, slots=True)
class AudioMessage:
    """0x10-0x18: caller audio, LINEAR16 LE at the kind's rate (may be empty)."""

    pcm: bytes
    kind: int = KIND_AUDIO

    @property
    def sample_rate(self) -> int:
        return AUDIO_KINDS[self.kind]


@dataclass(frozen=True, slots=True)
class DtmfMessage:
    """0x03: one DTMF digit; `digit` is None when the byte is not a valid digit."""

    digit: str | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class HangupMessage:
    """0x00: Asterisk hung up."""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """0xFF: Asterisk reports an error (its code byte, 0 when absent)."""

    code: int


AudioSocketMessage = UuidMessage | AudioMessage | DtmfMessage | HangupMessage | ErrorMessage


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One message on the wire."""
    return _HEADER.pack(kind, len(payload)) + payload


HANGUP_FRAME = encode_frame(KIND_HANGUP)


def encode_audio(pcm: bytes, kind: int = KIND_AUDIO) -> bytes:
    """An audio message of `kind` (LINEAR16 at its rate, one 20 ms frame in practice)."""
    return encode_frame(kind, pcm)


def parse_header(header: bytes) -> tuple[int, int]:
    """`(kind, payload length)` of a 3-byte header; refuses unknown or oversized ones."""
    if len(header) != HEADER_BYTES:
        raise ProtocolError("truncated", f"truncated header ({len(header)} of 3 bytes)")
    kind, length = _HEADER.unpack(header)
    limit = MAX_PAYLOAD.get(kind)
    if limit is None:
        raise ProtocolError("unknown_type", f"unknown message type 0x{kind:02x}")
    if length > limit:
        raise ProtocolError("too_large", f"type 0x{kind:02x} with {length} bytes (limit {limit})")
    return kind, length


def decode_message(kind: int, payload: bytes) -> AudioSocketMessage:
    """The typed message for a header's `kind` and its complete payload."""
    if kind in AUDIO_KINDS:
        if len(payload) % g711.SAMPLE_WIDTH:
            raise ProtocolError("odd_audio", f"odd audio payload of {len(payload)} bytes")
        size = frame_bytes(kind)
        if len(payload) % size:
            raise ProtocolError(
                "bad_frame_size",
                f"type 0x{kind:02x} ({AUDIO_KINDS[kind]} Hz slin) carries {len(payload)} "
                f"bytes, not whole 20 ms frames of {size} bytes (μ-law or another rate "
                "labelled as this kind? use c(slin) / the AudioSocket app)",
            )
        return AudioMessage(bytes(payload), kind)
    if kind == KIND_UUID:
        if len(payload) != 16:
            raise ProtocolError("bad_uuid", f"a UUID message of {len(payload)} bytes")
        return UuidMessage(str(uuidlib.UUID(bytes=bytes(payload))))
    if kind == KIND_DTMF:
        digit = payload.decode("ascii", "replace").upper()
        return DtmfMessage(digit if digit in DTMF_DIGITS else None, bytes(payload))
    if kind == KIND_HANGUP:
        return HangupMessage()
    if kind == KIND_ERROR:
        return ErrorMessage(payload[0] if payload else 0)
    raise ProtocolError("unknown_type", f"unknown message type 0x{kind:02x}")


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get the complete messages.

    `pending` is how many bytes of a started message are still buffered (a stream
    that ends with `pending > 0` was truncated mid-message).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[AudioSocketMessage]:
        """Messages completed by `data`, in order; raises `ProtocolError` at the first
        bad one (the stream cannot be resynchronized after it)."""
        self._buf += data
        out: list[AudioSocketMessage] = []
        while len(self._buf) >= HEADER_BYTES:
            kind, length = parse_header(bytes(self._buf[:HEADER_BYTES]))
            end = HEADER_BYTES + length
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[HEADER_BYTES:end])
            del self._buf[:end]
            out.append(decode_message(kind, payload))
        return out
