"""The call-transport interface: how a call's audio reaches the engine and leaves it.

A transport is a codec around one connection (browser WebSocket, Voximplant media
WebSocket, AudioSocket TCP, the simulator). It pushes caller input into the session
(`CallSession.feed_audio`, `feed_text`, `feed_dtmf`, `end`) from its own read loop,
and the session calls back `play`, `clear`, `hangup` and `send_event`. PCM is always
LINEAR16 mono little-endian at `sample_rate`, the transport's native rate, so nothing
on the path resamples.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from voicebot.clock import Clock
from voicebot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from aiohttp import WSMessage, web

log = logging.getLogger(__name__)


class Playout(Protocol):
    """The best truth a transport has about what the far end has actually played."""

    def queued_ms(self) -> float:
        """Bot audio handed to the transport since the call began (ms)."""
        ...

    def played_ms(self) -> float:
        """Bot audio the far end has played (confirmed, or estimated by a playout clock)."""
        ...

    def is_playing(self) -> bool:
        """True while queued audio is not played yet."""
        ...


class ClockPlayout:
    """Playout estimated from a real-time clock: audio plays at 1x from when it is queued.

    Used where the far end gives no acknowledgements (Voximplant, the simulator).
    """

    clock_driven = True  # played_ms() follows the clock: its end can be slept towards

    def __init__(self, clock: Clock, sample_rate: int) -> None:
        self._clock = clock
        self._bytes_per_ms = sample_rate * 2 / 1000
        self._queued = 0.0
        self._base_played = 0.0  # played ms at the moment the current run started
        self._run_start: float | None = None  # monotonic time playback (re)started

    def add(self, pcm_len: int) -> None:
        """Bot audio of `pcm_len` bytes was queued; it plays at 1x after what is queued."""
        now = self._clock.monotonic()
        played = self.played_ms()
        if self._run_start is None or played >= self._queued:
            self._base_played = played
            self._run_start = now
        self._queued += pcm_len / self._bytes_per_ms

    def clear(self) -> None:
        """Drop whatever was not played yet."""
        played = self.played_ms()
        self._queued = played
        self._base_played = played
        self._run_start = None

    def queued_ms(self) -> float:
        """Bot audio queued since the call began (ms)."""
        return self._queued

    def played_ms(self) -> float:
        """Bot audio played by the 1x clock (ms)."""
        if self._run_start is None:
            return self._base_played
        elapsed = (self._clock.monotonic() - self._run_start) * 1000
        return min(self._queued, self._base_played + elapsed)

    def is_playing(self) -> bool:
        """True while queued audio is not played yet."""
        return self.played_ms() < self._queued


class AckPlayout:
    """Playout from the far end's own reports (browser acks, AudioSocket frames written)."""

    def __init__(self, sample_rate: int) -> None:
        self._bytes_per_ms = sample_rate * 2 / 1000
        self._queued = 0.0
        self._played = 0.0
        self._cleared_at = 0.0  # acks are cumulative; after a clear they jump to the cut point

    def add(self, pcm_len: int) -> None:
        """Bot audio of `pcm_len` bytes was queued."""
        self._queued += pcm_len / self._bytes_per_ms

    def ack(self, played_ms: float) -> None:
        """The far end reports `played_ms` played (cumulative; never more than queued)."""
        self._played = min(self._queued, max(self._played, played_ms))

    def clear(self) -> None:
        """Drop what was not played yet (barge-in)."""
        self._queued = self._played

    def queued_ms(self) -> float:
        """Bot audio queued since the call began (ms)."""
        return self._queued

    def played_ms(self) -> float:
        """Bot audio the far end reported played (ms)."""
        return self._played

    def is_playing(self) -> bool:
        """True while queued audio is not played yet."""
        return self._played < self._queued


class CallTransport(Protocol):
    """One call's connection as the session sees it (see the module docstring)."""

    sample_rate: int
    playout: Playout

    async def play(self, pcm: bytes) -> None:
        """Queue bot audio (LINEAR16 at `sample_rate`). May return before it is played."""
        ...

    async def clear(self) -> None:
        """Drop queued bot audio now (barge-in)."""
        ...

    async def hangup(self, reason: str) -> None:
        """End the call from our side."""
        ...

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """Deliver a session event (transcript, turn metrics...). Audio-only transports may ignore it."""
        ...


SESSION_END_TIMEOUT_S = 10.0


class _Endable(Protocol):
    def end(self, reason: str = "caller_hangup") -> None: ...


async def end_session(
    session: _Endable | None, run_task: asyncio.Task[Any] | None, reason: str, label: str
) -> None:
    """The far end is gone: end the session and wait (bounded) for its `run()` to wrap
    up — summary, stored call record, `done` — then cancel whatever is still running.

    Shared by every transport so a stuck dialogue can never leak a call.
    """
    if session is not None:
        session.end(reason)
    if run_task is None or run_task.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(run_task), SESSION_END_TIMEOUT_S)
    except TimeoutError:
        log.error("%s: session did not end in time; cancelling", label)
        await cancel_and_wait(run_task)
    except Exception:  # the session's own failure was already logged by its owner
        pass


async def receive_before(ws: web.WebSocketResponse, deadline: float | None) -> WSMessage | None:
    """The next WebSocket message; None when `deadline` (event-loop time, s) passes
    first. `deadline` None waits as long as it takes (the call has started)."""
    timeout = None
    if deadline is not None:
        timeout = max(0.01, deadline - asyncio.get_running_loop().time())
    try:
        return await ws.receive(timeout=timeout)
    except TimeoutError:
        return None
