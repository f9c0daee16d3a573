"""One paced sender for telephony bot audio: frames out at 1x, ahead by a bounded lead.

Both telephony peers play what we send at real time with no flow control:
Voximplant buffers up to 10 s and silently drops anything further ahead (we keep our
lead under `telephony.voximplant.max_lead_ms`); Asterisk's AudioSocket has no buffer
at all (one 20 ms frame per 20 ms, lead = one frame). So the sender keeps the
absolute time `sent_end` at which the far end runs out of what we sent, and writes
the next frame once `sent_end + frame - now <= max_lead`. Deadlines come from that
absolute clock, so nothing drifts; every wait goes through the injected `Clock`.

After a stall longer than `max_catchup_ms` the schedule restarts from now instead of
bursting the backlog (a burst would be played late anyway or dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from voicebot.clock import Clock
from voicebot.tasks import cancel_and_wait
from voicebot.transports import g711

log = logging.getLogger(__name__)

Write = Callable[[bytes], Awaitable[None]]


class PacedSender:
    """Queue of bot PCM written in frames by one task against the playout clock.

    `write(pcm)` gets LINEAR16 frames of `frame_bytes` (the last one shorter unless
    `pad` fills it with silence) and may raise: any exception means the peer is gone,
    sending stops and `closed` becomes true. `on_sent(n)` is told how many real bytes
    (padding excluded) each write carried.
    """

    def __init__(
        self,
        write: Write,
        clock: Clock,
        *,
        sample_rate: int,
        max_lead_ms: float,
        max_catchup_ms: float = 0.0,
        pad: bool = False,
        on_sent: Callable[[int], None] | None = None,
        name: str = "paced-sender",
        frame_ms: float = g711.FRAME_MS,
    ) -> None:
        self._write = write
        self._clock = clock
        self.sample_rate = sample_rate
        self.frame_bytes = g711.pcm_bytes(sample_rate, frame_ms)
        self.max_lead_ms = float(max_lead_ms)
        self.max_catchup_ms = float(max_catchup_ms)
        self._pad = pad
        self._on_sent = on_sent
        self._name = name
        self.queue = bytearray()
        # Held while a frame is written and by `locked()` callers, so a clear and
        # its control message never interleave with a frame of the old audio.
        self.lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent_end = float("-inf")  # monotonic s: when the far end runs dry
        self.sent_ms = 0.0  # real bot audio written since the call began (padding excluded)
        self.closed = False
        self.frames_sent = 0
        self.restarts = 0  # schedule re-anchored after a stall longer than the catch-up
        self.max_lead_seen_ms = 0.0

    @property
    def running(self) -> bool:
        """The sending task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the sending task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    def push(self, pcm: bytes) -> None:
        """Queue bot audio; an odd trailing byte is dropped (LINEAR16 only)."""
        if self.closed or not pcm:
            return
        if len(pcm) % g711.SAMPLE_WIDTH:
            log.warning("%s: dropping a trailing odd byte of bot audio", self._name)
            pcm = pcm[:-1]
        self.queue += pcm
        self._wake.set()

    def drop_queued(self) -> None:
        """Forget audio not written yet (barge-in). Call under `lock` when a control
        message must follow it before any new frame."""
        self.queue.clear()

    def lead_ms(self) -> float:
        """How far what we sent runs ahead of the far end's playout (ms, >= 0)."""
        return max(0.0, (self.sent_end - self._clock.monotonic()) * 1000)

    def played_ms(self) -> float:
        """Audio the far end has played by the 1x clock: sent minus the lead (ms)."""
        return max(0.0, self.sent_ms - self.lead_ms())

    def playing(self) -> bool:
        """`played_ms() < sent_ms + pending_ms()`, without the arithmetic: audio is queued,
        or some was sent and the far end has not run dry yet. Asked for every caller
        frame while the bot talks."""
        return bool(self.queue) or (self.sent_ms > 0 and self.sent_end > self._clock.monotonic())

    def pending_ms(self) -> float:
        """Audio queued here and not written yet (ms)."""
        return g711.pcm_ms(len(self.queue), self.sample_rate)

    def far_end_cleared(self) -> None:
        """The far end dropped what it had buffered (barge-in clear, or it reports
        playback idle): what was sent and not played counts as never played."""
        self.sent_ms = self.played_ms()
        self.sent_end = min(self.sent_end, self._clock.monotonic())

    async def drain(self, still_playing: Callable[[], bool], cap_s: float) -> None:
        """Wait (at most `cap_s`) until `still_playing()` is false or sending stops."""
        deadline = self._clock.monotonic() + cap_s
        while still_playing() and self._clock.monotonic() < deadline:
            if not self.running:
                break
            await self._clock.sleep(g711.FRAME_MS / 1000)

    async def aclose(self) -> None:
        """Stop sending and drop the queue; the connection itself is the owner's."""
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        self.queue.clear()

    async def _loop(self) -> None:
        lead_s = self.max_lead_ms / 1000
        while not self.closed:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                # Idle time is not owed: the schedule restarts from now at the earliest.
                self.sent_end = max(self.sent_end, self._clock.monotonic())
                continue
            now = self._clock.monotonic()
            if now - self.sent_end > self.max_catchup_ms / 1000:
                if self.sent_end != float("-inf") and self.max_catchup_ms > 0:
                    self.restarts += 1
                self.sent_end = now
            size = min(self.frame_bytes, len(self.queue))
            this_s = g711.pcm_ms(self.frame_bytes if self._pad else size, self.sample_rate) / 1000
            wait = self.sent_end + this_s - lead_s - now
            if wait > 1e-9:
                await self._clock.sleep(wait)
                continue
            async with self.lock:
                if not self.queue:  # dropped while we waited for the lock
                    continue
                real = bytes(self.queue[:size])
                del self.queue[:size]
                frame = real + g711.silence(self.frame_bytes - len(real)) if self._pad else real
                try:
                    await self._write(frame)
                except Exception as exc:  # the peer went away: its owner cleans up
                    log.info(
                        "%s: write failed (%s); output stopped", self._name, type(exc).__name__
                    )
                    self.closed = True
                    return
                self.frames_sent += 1
                self.sent_end += this_s
                self.sent_ms += g711.pcm_ms(len(real), self.sample_rate)
                if self._on_sent is not None:
                    self._on_sent(len(real))
                self.max_lead_seen_ms = max(self.max_lead_seen_ms, self.lead_ms())


class PacedOutput:
    """Mixin for transports whose bot audio goes through `self.pacer`."""

    pacer: PacedSender

    @property
    def closed(self) -> bool:
        """Output stopped (hung up, closed, or the peer went away)."""
        return self.pacer.closed

    @property
    def frames_sent(self) -> int:
        """Audio frames written."""
        return self.pacer.frames_sent

    @property
    def restarts(self) -> int:
        """Times the schedule restarted after a stall longer than the catch-up."""
        return self.pacer.restarts

    @property
    def max_lead_seen_ms(self) -> float:
        """The largest lead over the far end's playout seen after a send (ms)."""
        return self.pacer.max_lead_seen_ms
