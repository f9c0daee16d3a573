"""Speech onset from the caller's own audio, without waiting for the recognizer.

Used while the engine holds an unfinished phrase (`engine.continuation_wait_ms`): the
moment the caller starts speaking again, the wait's timer is cancelled, so the answer
to the first half never starts over the second. The recognizer's first partial comes
150–250 ms after the onset; an energy detector on the 20 ms frames sees it in 60 ms.
"""

from __future__ import annotations

import math

from voicebot.audio import rms

ONSET_DBFS = -40.0  # quieter than quiet speech at a phone's level, above line noise
ONSET_MS = 60  # this much voiced audio in a row is speech, not a click


class OnsetDetector:
    """Energy onset over LINEAR16 mono frames at `sample_rate` Hz."""

    def __init__(
        self, sample_rate: int, threshold_dbfs: float = ONSET_DBFS, min_ms: int = ONSET_MS
    ) -> None:
        self._rate = sample_rate
        self._threshold = 32768.0 * math.pow(10.0, threshold_dbfs / 20.0)
        self._min_ms = min_ms
        self._voiced_ms = 0.0

    def reset(self) -> None:
        """Forget the voiced run."""
        self._voiced_ms = 0.0

    def voiced(self, pcm: bytes) -> bool:
        """Whether one frame is above the threshold."""
        # audioop's C loop: this runs for every caller frame while speculation watches.
        return rms(pcm) >= self._threshold  # 0 for an empty frame: never voiced

    def feed(self, pcm: bytes) -> bool:
        """Add one frame; True once `min_ms` of voiced audio has run in a row."""
        if self.voiced(pcm):
            samples = len(pcm) // 2
            self._voiced_ms += samples * 1000 / self._rate
        else:
            self._voiced_ms = 0.0
        return self._voiced_ms >= self._min_ms
