"""Event-loop lag: how late the loop runs a periodic timer.

Every call in a process shares one event loop, so its lag is added to every caller's
latency at once. Measured on the loop's own clock (`loop.time()`), deliberately not
the injected `Clock`: this is about the real loop, and tests never run it.
"""

from __future__ import annotations

import asyncio
import contextlib

from voicebot.ops import metrics

PERIOD_S = 0.1  # 10 samples a second: negligible work, fine enough for 20 ms frames
WINDOW_S = 5.0  # the max-lag gauge covers this long


class LoopLagMonitor:
    """Samples the running loop's lag into `voicebot_event_loop_lag_seconds`."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self.last_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling and wait for the sampler to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        window_max, window_end = 0.0, loop.time() + WINDOW_S
        while True:
            t = loop.time()
            await asyncio.sleep(self.period_s)
            now = loop.time()
            lag = max(0.0, now - t - self.period_s)
            self.last_s = lag
            metrics.LOOP_LAG.observe(lag)
            window_max = max(window_max, lag)
            if now >= window_end:
                metrics.LOOP_LAG_MAX.set(window_max)
                window_max, window_end = 0.0, now + WINDOW_S
