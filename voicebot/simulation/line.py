"""The simulator's phone line: records what the bot plays, when, and leaks it back
into the microphone as echo (gain and delay set by the script)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from voicebot.clock import Clock
from voicebot.transports.base import ClockPlayout


class SimulatorTransport:
    """An in-memory phone line: records what the bot plays, at the time it plays."""

    def __init__(
        self,
        clock: Clock,
        sample_rate: int,
        record: bool = False,
        *,
        echo_gain_db: float = -6.0,
        echo_delay_ms: int = 30,
    ) -> None:
        self.clock = clock
        self.echo_gain = 10 ** (echo_gain_db / 20)
        self.echo_delay_ms = echo_delay_ms
        self.sample_rate = sample_rate
        self.playout = ClockPlayout(clock, sample_rate)
        self.events: list[dict[str, Any]] = []
        self.spans: list[list[float]] = []  # [start_ms, end_ms] of contiguous bot audio
        self.clears = 0
        self.hung_up: str | None = None
        self._t0 = clock.monotonic()
        self._bytes_per_ms = sample_rate * 2 / 1000
        self._record = record
        self._bot_audio: list[tuple[float, bytes]] = []
        self._pending: list[tuple[float, bytes]] = []  # (play start ms, pcm) for echo

    def now_ms(self) -> float:
        """Transport time (ms) now, on the simulation's clock."""
        return self.ms_at(self.clock.monotonic())

    def ms_at(self, monotonic: float) -> float:
        """Transport ms of a monotonic clock reading."""
        return (monotonic - self._t0) * 1000

    async def play(self, pcm: bytes) -> None:
        """Record bot audio at its play time (1x after what is queued)."""
        now = self.now_ms()
        start = max(now, self.spans[-1][1]) if self.spans else now
        dur = len(pcm) / self._bytes_per_ms
        if self.spans and start <= self.spans[-1][1] + 1:
            self.spans[-1][1] = start + dur
        else:
            self.spans.append([start, start + dur])
        self.playout.add(len(pcm))
        if self._record:
            self._bot_audio.append((start, pcm))
        self._pending.append((start, pcm))

    async def clear(self) -> None:
        """Cut what was not played yet (barge-in), in the recording and the echo too."""
        self.clears += 1
        now = self.now_ms()
        self.playout.clear()
        if self.spans and self.spans[-1][1] > now:
            self.spans[-1][1] = now
        self._bot_audio = [(s, p) for s, p in self._bot_audio if s < now]
        self._bot_audio = [
            (s, p[: int((now - s) * self._bytes_per_ms) // 2 * 2]) for s, p in self._bot_audio
        ]
        self._pending = [
            (s, p[: int((now - s) * self._bytes_per_ms) // 2 * 2])
            for s, p in self._pending
            if s < now
        ]

    async def hangup(self, reason: str) -> None:
        """The bot hung up."""
        self.hung_up = reason

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """Keep the session's events (stamped with transport ms) for the report."""
        self.events.append(dict(event, at_ms=round(self.now_ms())))

    def echo_frame(self, start_ms: float, nbytes: int) -> bytes | None:
        """The bot audio audible in the microphone frame starting at `start_ms`."""
        if not self._pending:
            return None
        start_ms -= self.echo_delay_ms  # the microphone hears what played a moment ago
        out = np.zeros(nbytes // 2, dtype=np.float64)
        end_ms = start_ms + nbytes / self._bytes_per_ms
        hit = False
        keep: list[tuple[float, bytes]] = []
        for s, pcm in self._pending:
            e = s + len(pcm) / self._bytes_per_ms
            if e <= start_ms:
                continue
            keep.append((s, pcm))
            if s >= end_ms:
                continue
            src = np.frombuffer(pcm, dtype="<i2")
            a = int((max(s, start_ms) - s) * self._bytes_per_ms) // 2
            b = int((min(e, end_ms) - s) * self._bytes_per_ms) // 2
            o = int((max(s, start_ms) - start_ms) * self._bytes_per_ms) // 2
            n = min(b - a, len(out) - o)
            if n > 0:
                out[o : o + n] += src[a : a + n] * self.echo_gain
                hit = True
        self._pending = keep
        return np.clip(out, -32768, 32767).astype("<i2").tobytes() if hit else None

    def bot_track(self, total_ms: float) -> bytes:
        """The bot's audio placed on a timeline of `total_ms` (for the stereo recording)."""
        buf = bytearray(int(total_ms * self._bytes_per_ms) // 2 * 2)
        for s, pcm in self._bot_audio:
            i = int(s * self._bytes_per_ms) // 2 * 2
            j = min(len(buf), i + len(pcm))
            buf[i:j] = pcm[: j - i]
        return bytes(buf)
