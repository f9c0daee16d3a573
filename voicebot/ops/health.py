"""Readiness: is this process taking new calls? (`/readyz`, back-pressure, drain).

Two things make a process not ready:
- it is draining (SIGTERM: no new calls; live ones finish), or
- a provider is overloaded or down: over the last `window_s`, its error rate (errors
  per turn) or a critical-path stage's p95 latency passed its threshold. New calls
  would get a slow or broken bot, so they get a polite "all lines are busy" instead,
  and a load balancer that polls `/readyz` sends them to another host. The state
  holds for `recover_s` after the last bad window, so it does not flap.

Time comes from the injected clock's `monotonic` (tests drive it by hand).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot.config import OverloadSettings
from voicebot.ops import metrics

OverloadPolicy = OverloadSettings  # the thresholds; parsed from config `server.overload`

# Turn-record keys judged for latency, and the provider kind they belong to.
LATENCY_STAGES: Mapping[str, str] = {"llm_wait": "llm", "tts_wait": "tts"}


@dataclass
class _Window:
    turns: deque[float] = field(default_factory=deque)
    errors: dict[str, deque[float]] = field(default_factory=dict)
    latency: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)


class Readiness:
    """The process's readiness, fed by turn records and provider errors."""

    def __init__(self, policy: OverloadPolicy, now: Callable[[], float]) -> None:
        self.policy = policy
        self._now = now
        self._w = _Window()
        self.draining = False
        self._bad_until = 0.0
        self._reasons: list[str] = []
        self._down: set[str] = set()
        metrics.READY.set(1)
        metrics.DRAINING.set(0)

    # ------------------------------------------------------------------ inputs

    def on_turn(self, latency_ms: Mapping[str, Any]) -> None:
        """One turn record (ms per stage, as in `Turn.latency`)."""
        t = self._now()
        self._w.turns.append(t)
        for key, kind in LATENCY_STAGES.items():
            value = latency_ms.get(key)
            if isinstance(value, int | float) and value > 0:
                self._w.latency.setdefault(kind, deque()).append((t, float(value) / 1000))

    def on_provider_error(self, provider: str, code: str) -> None:
        """One provider error (see `metrics.on_provider_error`)."""
        self._w.errors.setdefault(provider, deque()).append(self._now())

    def mark_down(self, provider: str, down: bool = True) -> None:
        """An operator or a health probe says `provider` is down (or back)."""
        (self._down.add if down else self._down.discard)(provider)

    def start_draining(self) -> None:
        """SIGTERM: not ready from now on, for good."""
        self.draining = True
        metrics.DRAINING.set(1)
        metrics.READY.set(0)

    # ------------------------------------------------------------------ state

    def overloaded(self) -> list[str]:
        """Why providers are judged overloaded now (empty: they are fine)."""
        p, now = self.policy, self._now()
        if not p.enabled:
            return []
        horizon = now - p.window_s
        w = self._w
        while w.turns and w.turns[0] < horizon:
            w.turns.popleft()
        reasons = [f"{name} marked down" for name in sorted(self._down)]
        turns = len(w.turns)
        for provider, times in w.errors.items():
            while times and times[0] < horizon:
                times.popleft()
            if len(times) >= p.min_turns and len(times) / max(turns, 1) > p.error_rate:
                reasons.append(f"{provider}: {len(times)} errors in {turns} turns")
        for kind, samples in w.latency.items():
            while samples and samples[0][0] < horizon:
                samples.popleft()
            if len(samples) >= p.min_turns:
                values = sorted(v for _, v in samples)
                p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
                if p95 > p.stage_p95_s:
                    reasons.append(f"{kind} p95 {p95:.2f} s > {p.stage_p95_s:g} s")
        if reasons:
            self._bad_until = now + p.recover_s
            self._reasons = reasons
        elif now < self._bad_until:
            reasons = [*self._reasons, "recovering"]
        return reasons

    def state(self) -> tuple[bool, list[str]]:
        """(ready, reasons it is not)."""
        reasons = ["draining"] if self.draining else []
        reasons += self.overloaded()
        metrics.READY.set(0 if reasons else 1)
        return not reasons, reasons

    @property
    def ready(self) -> bool:
        """Whether a new call should be taken now."""
        return self.state()[0]
