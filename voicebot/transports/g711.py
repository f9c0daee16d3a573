"""G.711 μ-law / A-law <-> LINEAR16 and telephony frame arithmetic.

The codec is `audioop` (stdlib up to 3.12, `audioop-lts` from 3.13: same module,
same C code), so conversions are bit-exact with every other audioop-based stack.
Telephony audio formats are the classic source of "8 kHz played as 16 kHz" and
"μ-law decoded as linear" bugs; every size computation goes through the helpers
below instead of literals sprinkled over the transports.
"""

from __future__ import annotations

from voicebot.audio import SAMPLE_WIDTH, audioop

FRAME_MS = 20  # the telephony packetization interval


def ulaw_to_pcm(data: bytes) -> bytes:
    """μ-law bytes (1 per sample) -> LINEAR16 (2 bytes per sample)."""
    return audioop.ulaw2lin(data, SAMPLE_WIDTH)


def pcm_to_ulaw(pcm: bytes) -> bytes:
    """LINEAR16 -> μ-law. An odd trailing byte is an error, not silently dropped."""
    _check_pcm(pcm)
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


def alaw_to_pcm(data: bytes) -> bytes:
    """A-law bytes to LINEAR16 (2 bytes per sample)."""
    return audioop.alaw2lin(data, SAMPLE_WIDTH)


def pcm_to_alaw(pcm: bytes) -> bytes:
    """LINEAR16 to A-law (raises ValueError for an odd length)."""
    _check_pcm(pcm)
    return audioop.lin2alaw(pcm, SAMPLE_WIDTH)


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"LINEAR16 data must have an even length, got {len(pcm)} bytes")


def pcm_bytes(sample_rate: int, ms: float = FRAME_MS) -> int:
    """LINEAR16 bytes for `ms` of mono audio (20 ms at 8 kHz = 320)."""
    return int(sample_rate * ms / 1000) * SAMPLE_WIDTH


def samples(sample_rate: int, ms: float = FRAME_MS) -> int:
    """Samples in `ms` of audio (20 ms at 8 kHz = 160)."""
    return int(sample_rate * ms / 1000)


def pcm_ms(nbytes: int, sample_rate: int) -> float:
    """Duration of `nbytes` of LINEAR16 mono."""
    return nbytes / SAMPLE_WIDTH * 1000 / sample_rate


def silence(nbytes: int) -> bytes:
    """LINEAR16 silence (digital zero; μ-law/A-law silence is NOT zero bytes)."""
    return bytes(nbytes - nbytes % SAMPLE_WIDTH)
