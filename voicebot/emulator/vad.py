"""Energy voice-activity detection over LINEAR16 mono PCM.

The STT emulator needs to know where the caller speaks and pauses, in audio time,
cheaply for hundreds of concurrent streams: one numpy pass per received chunk computes
the RMS of every whole frame; a partial frame is carried over to the next chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SUPPORTED_RATES = (8000, 16000, 48000)


def dbfs_to_rms(dbfs: float) -> float:
    """Full scale is int16 32768."""
    return 32768.0 * math.pow(10.0, dbfs / 20.0)


@dataclass(frozen=True, slots=True)
class VadFrames:
    """Decisions for the whole frames completed by one `feed()`.

    Frame `i` covers samples `[start_sample + i*frame_samples, start_sample + (i+1)*frame_samples)`.
    `voiced` is the raw energy decision; `speech` adds the hangover, which bridges the
    short dips between syllables and words.
    """

    start_sample: int
    frame_samples: int
    voiced: np.ndarray
    speech: np.ndarray

    def __len__(self) -> int:
        return len(self.voiced)


class EnergyVad:
    """Frame RMS above a threshold = voiced; speech lasts `hangover_ms` past the last
    voiced frame. Works at any rate; 8/16/48 kHz are the SpeechKit ones."""

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold_dbfs: float = -45.0,
        frame_ms: int = 20,
        hangover_ms: int = 200,
    ) -> None:
        if sample_rate <= 0 or frame_ms <= 0:
            raise ValueError("sample_rate and frame_ms must be positive")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_samples = sample_rate * frame_ms // 1000
        self.threshold_rms = dbfs_to_rms(threshold_dbfs)
        # Compare mean squares (no sqrt per frame).
        self._threshold_ms = self.threshold_rms**2
        self.hangover_frames = max(0, math.ceil(hangover_ms / frame_ms))
        self._carry = b""
        self._frames_since_voiced = self.hangover_frames + 1
        self.position = 0  # samples covered by whole frames and skipped silence

    @property
    def in_speech(self) -> bool:
        """True while voiced frames (plus the hangover) continue."""
        return self._frames_since_voiced <= self.hangover_frames

    @property
    def received_samples(self) -> int:
        """Including the partial frame still waiting for more audio."""
        return self.position + len(self._carry) // 2

    def feed(self, pcm: bytes) -> VadFrames:
        """Frame `pcm` (carrying a partial frame over); which frames are voiced."""
        start = self.position
        if self._carry:
            pcm = self._carry + pcm
        frame_bytes = self.frame_samples * 2
        n = len(pcm) // frame_bytes
        used = n * frame_bytes
        self._carry = pcm[used:]
        if n == 0:
            empty = np.zeros(0, dtype=bool)
            return VadFrames(start, self.frame_samples, empty, empty)
        samples = np.frombuffer(pcm, dtype="<i2", count=n * self.frame_samples)
        frames = samples.reshape(n, self.frame_samples).astype(np.float32)
        mean_sq = np.einsum("ij,ij->i", frames, frames) / self.frame_samples
        voiced = mean_sq > self._threshold_ms
        speech = self._apply_hangover(voiced)
        self.position += n * self.frame_samples
        return VadFrames(start, self.frame_samples, voiced, speech)

    def skip(self, samples: int) -> None:
        """Account for silence that was not sent as PCM (SpeechKit `silence_chunk`).

        Any partial frame is dropped as silence too, keeping frames aligned to stream time.
        """
        carried = len(self._carry) // 2
        self._carry = b""
        total = carried + max(0, samples)
        self.position += total
        self._frames_since_voiced += total // max(1, self.frame_samples)

    def _apply_hangover(self, voiced: np.ndarray) -> np.ndarray:
        h = self.hangover_frames
        n = len(voiced)
        # Frames since the last voiced one, carrying state across calls.
        idx = np.arange(n)
        last = np.where(voiced, idx, -1)
        np.maximum.accumulate(last, out=last)
        since = np.where(last >= 0, idx - last, self._frames_since_voiced + idx + 1)
        self._frames_since_voiced = int(since[-1])
        return since <= h
