"""Real Russian speech for the emulator's TTS, from espeak-ng.

Robotic, but real speech: STT, echo suppression and playout code downstream see audio
with genuine voiced/unvoiced structure and plausible durations. Results are cached in a
bounded LRU (and concurrent requests for the same phrase share one run), because a bot
repeats the same prompts in every call and the benchmark runs hundreds of calls.

A miss (a phrase with the caller's name, date or phone in it) is synthesized off the
event loop, in a worker thread, by libespeak-ng loaded in-process: the emulator is a
test double sharing the bench's cores, and its STT shares its loop. The `espeak-ng`
CLI (a process and a dictionary load per phrase, ~3x the CPU) is the fallback.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import shutil
import struct
import subprocess
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ESPEAK_RATE = 22050  # espeak-ng's native output rate
DEFAULT_WPM = 175
_FEMALE_VARIANT = "f3"
_MALE_VARIANT = "m3"


class SynthesisFailed(RuntimeError):
    """espeak-ng could not synthesize (missing binary, bad voice, timeout)."""

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


class _EspeakLibrary:
    """libespeak-ng in this process (ctypes), for one thread at a time.

    The CLI costs a process start and a reload of the Russian dictionary per phrase:
    ~13 ms of CPU, against ~5 ms for the synthesis itself. The library is not
    thread-safe: callers hold `lock`.
    """

    _OUTPUT_SYNCHRONOUS = 2
    _RATE_PARAM = 1
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1
    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self.lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._callback = self._CALLBACK(self._on_audio)  # kept alive with the object
        if lib.espeak_Initialize(self._OUTPUT_SYNCHRONOUS, 0, None, 0) != ESPEAK_RATE:
            raise OSError("libespeak-ng: unexpected sample rate")
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: tuple[str, int] | None = None

    @classmethod
    def load(cls) -> _EspeakLibrary | None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            return cls(ctypes.CDLL(name))
        except (OSError, AttributeError) as exc:
            log.info("libespeak-ng not usable (%s): the espeak-ng CLI is used", exc)
            return None

    def _on_audio(self, wav: Any, samples: int, events: Any) -> int:
        if wav and samples > 0:
            self._chunks.append(ctypes.string_at(wav, samples * 2))
        return 0

    def synthesize(self, text: str, voice: str, wpm: int) -> bytes:
        with self.lock:
            if self._voice != (voice, wpm):
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise SynthesisFailed(f"libespeak-ng: no voice {voice}")
                self._lib.espeak_SetParameter(self._RATE_PARAM, wpm, 0)
                self._voice = (voice, wpm)
            self._chunks = []
            data = text.encode("utf-8")
            err = self._lib.espeak_Synth(
                ctypes.c_char_p(data),
                len(data) + 1,
                0,
                self._POS_CHARACTER,
                0,
                self._CHARS_UTF8,
                None,
                None,
            )
            if err != 0:
                raise SynthesisFailed(f"libespeak-ng: espeak_Synth returned {err}")
            self._lib.espeak_Synchronize()
            pcm, self._chunks = b"".join(self._chunks), []
        return pcm


_LIBRARY: _EspeakLibrary | None = None
_LIBRARY_LOADED = False
_LIBRARY_GUARD = threading.Lock()


def espeak_library() -> _EspeakLibrary | None:
    """The process-wide libespeak-ng (it has global state), or None without it."""
    global _LIBRARY, _LIBRARY_LOADED
    with _LIBRARY_GUARD:
        if not _LIBRARY_LOADED:
            _LIBRARY, _LIBRARY_LOADED = _EspeakLibrary.load(), True
    return _LIBRARY


class EspeakSynthesizer:
    """espeak-ng in worker threads (libespeak-ng in-process where it loads, else the
    `espeak-ng --stdout` CLI), behind an LRU cache."""

    def __init__(
        self,
        *,
        cache_mb: int = 64,
        binary: str = "espeak-ng",
        workers: int = 4,
        use_library: bool = True,
    ) -> None:
        self._binary = binary
        self._use_library = use_library and binary == "espeak-ng"
        self._cache = _ByteLru(cache_mb * 1024 * 1024 // 2)  # espeak's 22050 Hz output
        self._resampled = _ByteLru(cache_mb * 1024 * 1024 // 2)  # at requested rates
        self._inflight: dict[tuple[str, str, int, int], asyncio.Future[bytes]] = {}
        self._lock = threading.Lock()  # the caches are shared with the worker threads
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="espeak")
        self.subprocess_runs = 0  # espeak runs (CLI or library), for tests: hits cost none

    @staticmethod
    def available(binary: str = "espeak-ng") -> bool:
        """True when the espeak-ng binary is on PATH."""
        return shutil.which(binary) is not None

    async def synthesize(
        self, text: str, *, female: bool = True, speed: float = 1.0, sample_rate: int = 22050
    ) -> bytes:
        """PCM16 mono at `sample_rate` speaking `text` (Russian)."""
        variant = _FEMALE_VARIANT if female else _MALE_VARIANT
        wpm = max(80, min(450, round(DEFAULT_WPM * speed)))
        key = (text, f"ru+{variant}", wpm, sample_rate)
        out = self._resampled.get(key)
        if out is not None:
            return out
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        # A miss runs espeak-ng and the resampler in a worker thread: on the event loop
        # (an asyncio subprocess: a child-watcher thread, three pipe transports, then
        # numpy) it cost the emulator's STT, which shares that loop, its timing under load.
        fut = asyncio.get_running_loop().run_in_executor(
            self._pool, self._miss, text, key[1], wpm, sample_rate
        )
        self._inflight[key] = fut
        # Forgotten when done, even if every waiter was cancelled (the thread finishes).
        fut.add_done_callback(lambda _f: self._inflight.pop(key, None))
        return await asyncio.shield(fut)

    def _miss(self, text: str, voice: str, wpm: int, sample_rate: int) -> bytes:
        """Worker thread: native speech (cached), resampled, both caches filled."""
        with self._lock:
            native = self._cache.get((text, voice, wpm))
        if native is None:
            with self._lock:
                self.subprocess_runs += 1
            lib = espeak_library() if self._use_library else None
            native = lib.synthesize(text, voice, wpm) if lib else self._run(text, voice, wpm)
        out = resample(native, ESPEAK_RATE, sample_rate)
        with self._lock:
            self._cache.put((text, voice, wpm), native)
            self._resampled.put((text, voice, wpm, sample_rate), out)
        return out

    def _run(self, text: str, voice: str, wpm: int) -> bytes:
        # Text goes through stdin, never the command line: no quoting issues, no
        # leaking the text in `ps`.
        proc = subprocess.run(
            [self._binary, "-v", voice, "-s", str(wpm), "--stdout"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise SynthesisFailed(f"espeak-ng exited with {proc.returncode}: {proc.stderr[:200]!r}")
        pcm, rate = wav_to_pcm(proc.stdout)
        if rate != ESPEAK_RATE:
            pcm = resample(pcm, rate, ESPEAK_RATE)
        return pcm
