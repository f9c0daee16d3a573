"""Streaming sample-rate conversion of LINEAR16 mono (soxr).

Used where a line's rate is not one the recognizer takes or not the rate the call
runs at (AudioSocket's 12-192 kHz kinds; docs/telephony.md). soxr (libsoxr) is the
well-kept resampler with a streaming API and prebuilt wheels: its state carries over
between chunks, so 20 ms frames convert without clicks at the seams; scipy's
`resample_poly` is one-shot and would need overlap handling of our own.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """`in_rate` -> `out_rate` for one direction of one call (keeps filter state)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._rs = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        """Resampled audio for `pcm` (LINEAR16 LE); output lags input by the filter's
        few-ms delay and its length varies by a sample or so per chunk."""
        x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        y = self._rs.resample_chunk(x, last=last)
        return np.asarray(y, dtype="<i2").tobytes()


def resample_chunk(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """One self-contained chunk (a TTS chunk of bot audio) converted whole: nothing is
    held back for a next chunk, so the end of a reply is never stuck in a filter."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return np.asarray(soxr.resample(x, in_rate, out_rate, quality="HQ"), dtype="<i2").tobytes()


def session_rate(line_rate: int) -> int:
    """The rate a call runs at (recognition, synthesis) for a line at `line_rate`:
    16 kHz when the line offers 16 kHz or more (wideband recognition is markedly
    better), else 8 kHz. Both are SpeechKit rates."""
    return 16000 if line_rate >= 16000 else 8000
