"""Keeps the bot from hearing itself.

Bot playback is recorded as intervals on the *call audio* timeline (ms of caller audio
received), so a recognized utterance — which carries call-audio times from the
recognizer's cursors — can be checked exactly against what was playing when it was
spoken. The seed's rule stands: anything said while the bot plays, plus a tail for the
room's echo to die down, is not the caller.
"""

from __future__ import annotations

from collections import deque


class EchoGate:
    def __init__(self, tail_ms: int, keep: int = 16) -> None:
        self.tail_ms = tail_ms
        self._intervals: deque[list[int]] = deque(maxlen=keep)  # [start_ms, end_ms or -1]
        self.blocked = 0

    @property
    def bot_audible(self) -> bool:
        return bool(self._intervals) and self._intervals[-1][1] < 0

    def bot_started(self, at_ms: int) -> None:
        if not self.bot_audible:
            self._intervals.append([at_ms, -1])

    def bot_stopped(self, at_ms: int) -> None:
        if self.bot_audible:
            self._intervals[-1][1] = max(at_ms, self._intervals[-1][0])

    def active(self, at_ms: int) -> bool:
        """True while the bot plays or its echo tail lasts."""
        if not self._intervals:
            return False
        _, end = self._intervals[-1]
        return end < 0 or at_ms < end + self.tail_ms

    def blocks(self, start_ms: int, end_ms: int) -> bool:
        """Did speech in [start_ms, end_ms] overlap bot playback (+ tail)?"""
        for s, e in self._intervals:
            stop = float("inf") if e < 0 else e + self.tail_ms
            if start_ms < stop and end_ms > s:
                self.blocked += 1
                return True
        return False
