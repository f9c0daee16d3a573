"""G.711 codec: bit-exact against an independent reference of the ITU algorithm.

The reference below is written from the G.711 segment tables (as in the classic
Sun/CCITT g711.c), not from audioop, so a codec that e.g. treated μ-law as linear,
swapped the laws or got the A-law even-bit inversion wrong fails here.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from voicebot.transports import g711

# --------------------------------------------------------------------------- reference

_SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def _seg(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_ulaw_decode(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def ref_alaw_decode(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a & 0x80 else -t


def ref_ulaw_encode(pcm: int) -> int:
    # 14-bit magnitude, bias 33, clip 8159 (CCITT g711.c "linear2ulaw").
    seg_uend = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
    pcm >>= 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + 33
    seg = _seg(pcm, seg_uend)
    if seg >= 8:
        return 0x7F ^ mask
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    return uval ^ mask


def ref_alaw_encode(pcm: int) -> int:
    seg_aend = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _seg(pcm, seg_aend)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


def _pcm(values: list[int] | np.ndarray) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def _ints(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


# --------------------------------------------------------------------------- tests

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype=np.int32)


def test_ulaw_decode_all_codes_bit_exact() -> None:
    assert _ints(g711.ulaw_to_pcm(ALL_CODES)) == [ref_ulaw_decode(c) for c in range(256)]


def test_alaw_decode_all_codes_bit_exact() -> None:
    assert _ints(g711.alaw_to_pcm(ALL_CODES)) == [ref_alaw_decode(c) for c in range(256)]


def test_ulaw_encode_all_int16_bit_exact() -> None:
    got = g711.pcm_to_ulaw(_pcm(ALL_PCM))
    assert list(got) == [ref_ulaw_encode(int(v)) for v in ALL_PCM]


def test_alaw_encode_all_int16_bit_exact() -> None:
    got = g711.pcm_to_alaw(_pcm(ALL_PCM))
    assert list(got) == [ref_alaw_encode(int(v)) for v in ALL_PCM]


@pytest.mark.parametrize(
    ("decode", "anchors"),
    [
        # Standard anchors: μ-law 0xFF/0x7F are the two zeros, 0x80/0x00 the extremes.
        (g711.ulaw_to_pcm, {0xFF: 0, 0x7F: 0, 0x80: 32124, 0x00: -32124}),
        # A-law: 0xD5/0x55 are the smallest magnitudes (even bits inverted on the wire).
        (g711.alaw_to_pcm, {0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256}),
    ],
)
def test_known_anchor_values(decode, anchors: dict[int, int]) -> None:
    assert _ints(decode(bytes(anchors))) == list(anchors.values())


def test_decode_doubles_the_size_and_keeps_the_duration() -> None:
    frame = bytes(range(160))  # 20 ms of G.711 at 8 kHz
    for decode in (g711.ulaw_to_pcm, g711.alaw_to_pcm):
        pcm = decode(frame)
        assert len(pcm) == g711.pcm_bytes(8000) == 320
        assert g711.pcm_ms(len(pcm), 8000) == pytest.approx(20.0)


def test_roundtrip_is_stable_after_one_pass() -> None:
    # decode(encode(decode(c))) == decode(c): the codes are fixed points of the codec.
    for dec, enc in ((g711.ulaw_to_pcm, g711.pcm_to_ulaw), (g711.alaw_to_pcm, g711.pcm_to_alaw)):
        once = dec(ALL_CODES)
        assert dec(enc(once)) == once


def test_sine_survives_within_g711_error() -> None:
    t = np.arange(800) / 8000
    sine = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    for dec, enc in ((g711.ulaw_to_pcm, g711.pcm_to_ulaw), (g711.alaw_to_pcm, g711.pcm_to_alaw)):
        back = np.frombuffer(dec(enc(sine.tobytes())), dtype="<i2").astype(np.int32)
        err = np.abs(back - sine.astype(np.int32))
        # Logarithmic companding: error grows with amplitude, at most ~1/32 of it.
        assert int(err.max()) <= 12000 // 32 + 16
        assert float(np.corrcoef(back, sine)[0, 1]) > 0.999


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError):
        g711.pcm_to_ulaw(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        g711.pcm_to_alaw(b"\x01")


def test_frame_helpers() -> None:
    assert g711.pcm_bytes(8000) == 320
    assert g711.pcm_bytes(16000) == 640
    assert g711.samples(8000) == 160
    assert g711.samples(16000, 10) == 160
    assert g711.silence(5) == b"\x00" * 4
