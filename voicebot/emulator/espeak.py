"""Real Russian speech for the emulator's TTS, from espeak-ng.

Robotic, but real speech: STT, echo suppression and playout code downstream see audio
with genuine voiced/unvoiced structure and plausible durations. Results are cached in a
bounded LRU (and concurrent requests for the same phrase share one subprocess), because
a bot repeats the same prompts in every call and the benchmark runs hundreds of calls.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
from collections import OrderedDict

import numpy as np

log = logging.getLogger(__name__)

ESPEAK_RATE = 22050  # espeak-ng's native output rate
DEFAULT_WPM = 175
_FEMALE_VARIANT = "f3"
_MALE_VARIANT = "m3"


class SynthesisFailed(RuntimeError):
    pass


def wav_to_pcm(wav: bytes) -> tuple[bytes, int]:
    """PCM16 payload and rate of a RIFF/WAVE file.

    Chunk sizes are not trusted: `espeak-ng --stdout` writes 0x7fff.... placeholders
    because it cannot seek back, so the data chunk runs to the end of the bytes.
    """
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise SynthesisFailed("not a WAV file")
    pos, rate = 12, 0
    while pos + 8 <= len(wav):
        cid, size = wav[pos : pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt, channels, rate = struct.unpack_from("<HHI", wav, body)
            bits = struct.unpack_from("<H", wav, body + 14)[0]
            if fmt != 1 or channels != 1 or bits != 16:
                raise SynthesisFailed("expected mono 16-bit PCM")
        elif cid == b"data":
            data = wav[body : min(len(wav), body + size)]
            return data[: len(data) // 2 * 2], rate
        pos = body + size + (size & 1)
    raise SynthesisFailed("WAV without a data chunk")


def wav_header(data_bytes: int, rate: int) -> bytes:
    """The 44-byte header of a mono PCM16 WAV holding `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def pcm_to_wav(pcm: bytes, rate: int) -> bytes:
    """A complete WAV file (correct sizes, unlike espeak's streamed header)."""
    return wav_header(len(pcm), rate) + pcm


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Band-limited resampling of PCM16 mono (windowed-sinc low-pass, then interpolation).

    Good enough for a test double: no aliasing whistle when going down to 8 kHz, and
    no dependency beyond numpy.
    """
    if src_rate == dst_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if dst_rate < src_rate:
        cutoff = 0.45 * dst_rate / src_rate  # cycles/sample, a little under Nyquist
        taps = 63
        n = np.arange(taps) - (taps - 1) / 2
        h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
        x = np.convolve(x, (h / h.sum()).astype(np.float32), mode="same")
    n_out = round(len(x) * dst_rate / src_rate)
    t = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    y = np.interp(t, np.arange(len(x), dtype=np.float64), x)
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()


class _ByteLru:
    """An LRU of byte strings bounded by total size (phrases vary a lot in length)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[object, ...]) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[object, ...], value: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = value
        self._bytes += len(value)
        while self._bytes > self._max and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)


class EspeakSynthesizer:
    """`espeak-ng -v ru --stdout`, run as an asyncio subprocess, behind an LRU cache."""

    def __init__(self, *, cache_mb: int = 64, binary: str = "espeak-ng") -> None:
        self._binary = binary
        self._cache = _ByteLru(cache_mb * 1024 * 1024 // 2)  # espeak's 22050 Hz output
        self._resampled = _ByteLru(cache_mb * 1024 * 1024 // 2)  # at requested rates
        self._inflight: dict[tuple[str, str, int], asyncio.Future[bytes]] = {}
        self.subprocess_runs = 0  # for tests: cache hits cost no subprocess

    @staticmethod
    def available(binary: str = "espeak-ng") -> bool:
        return shutil.which(binary) is not None

    async def synthesize(
        self, text: str, *, female: bool = True, speed: float = 1.0, sample_rate: int = 22050
    ) -> bytes:
        """PCM16 mono at `sample_rate` speaking `text` (Russian)."""
        variant = _FEMALE_VARIANT if female else _MALE_VARIANT
        wpm = max(80, min(450, round(DEFAULT_WPM * speed)))
        key = (text, f"ru+{variant}", wpm, sample_rate)
        out = self._resampled.get(key)
        if out is None:
            out = resample(await self._native(text, key[1], wpm), ESPEAK_RATE, sample_rate)
            self._resampled.put(key, out)
        return out

    async def _native(self, text: str, voice: str, wpm: int) -> bytes:
        key = (text, voice, wpm)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            pcm = await self._run(text, voice, wpm)
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else SynthesisFailed("cancelled"))
            fut.exception()  # mark retrieved: waiters (if any) get it via shield
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(pcm)
        self._cache.put(key, pcm)
        return pcm

    async def _run(self, text: str, voice: str, wpm: int) -> bytes:
        self.subprocess_runs += 1
        # Text goes through stdin, never the command line: no quoting issues, no
        # leaking the text in `ps`.
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "-v",
            voice,
            "-s",
            str(wpm),
            "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate(text.encode("utf-8"))
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise SynthesisFailed(f"espeak-ng exited with {proc.returncode}: {err[:200]!r}")
        pcm, rate = wav_to_pcm(out)
        if rate != ESPEAK_RATE:
            pcm = resample(pcm, rate, ESPEAK_RATE)
        return pcm
