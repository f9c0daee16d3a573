"""The load generator's caller: one phone-like line, its statistics and the shared
frame clock (see `load.py`). Transport-specific callers are in `callers.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from voicebot.bench.audio import FRAME_MS

log = logging.getLogger("voicebot.bench.load")

FRAME_S = FRAME_MS / 1000


REPLY_TIMEOUT_S = 10.0  # no bot audio this long after the caller spoke: no reply


REPLY_END_TIMEOUT_S = 30.0


PAUSE_AFTER_REPLY_S = 0.8  # the caller waits this long after the bot finished (echo tail)


UNDERRUN_SLACK_S = 0.02  # ws/voximplant: arrival this much after the buffer ran dry


AUDIOSOCKET_GAP_S = 0.06  # audiosocket: a gap this long mid-reply


ACK_EVERY_FRAMES = 5  # browser `playback` acks every 100 ms


HANGUP_WAIT_S = 3.0  # after its last line, the caller waits this long for the bot's goodbye


@dataclass
class Stats:
    """What the load generator counts across all calls: voice-to-voice, underruns, errors,
    drops."""

    v2v_ms: list[float] = field(default_factory=list)
    v2v_by_line: dict[int, list[float]] = field(default_factory=dict)  # caller line no.
    underruns: int = 0
    underrun_gaps_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    dropped_calls: int = 0
    calls_started: int = 0
    calls_completed: int = 0  # ended by the bot (hang-up) or by us at the end, cleanly
    bot_hangups: int = 0
    replies: int = 0
    no_reply: int = 0
    turn_events: list[dict[str, Any]] = field(default_factory=list)
    tick_lag_ms: list[float] = field(default_factory=list)
    # (first audio at, caller line, v2v ms): a reply type slowed by a burst shows as a ramp
    v2v_timeline: list[tuple[float, int, float]] = field(default_factory=list)
    # Soak accounting (ws only: the browser protocol shows transcripts and bookings).
    utterances_said: int = 0
    lost_utterances: int = 0  # said long enough before the call ended, never transcribed
    booking_ids: list[str] = field(default_factory=list)  # bookings confirmed to a caller

    def error(self, what: str) -> None:
        """Count one error of kind `what`."""
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what[:200])


class FrameClock:
    """One 20 ms clock for every caller: each tick asks each live caller for one frame."""

    def __init__(self, stats: Stats) -> None:
        self.callers: set[Caller] = set()
        self._stats = stats
        self.measuring = False  # lag is recorded only in the measured window

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every caller on absolute 20 ms deadlines until `stop`; reports how late it
        ran."""
        loop = asyncio.get_running_loop()
        t_next = loop.time()
        while not stop.is_set():
            now = loop.time()
            lag = now - t_next
            if lag > 0.005 and self.measuring:
                self._stats.tick_lag_ms.append(lag * 1000)
            for caller in list(self.callers):
                try:
                    await caller.tick(now)
                except Exception as exc:  # a broken socket ends that call only
                    caller.fail(f"send: {exc!r}")
            t_next += FRAME_S
            delay = t_next - loop.time()
            if delay < -1.0:  # hopelessly behind: resync (counted in tick_lag_ms)
                t_next = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))


class Caller:
    """One call's caller side, independent of the transport's wire format."""

    def __init__(
        self,
        audio: dict[str, tuple[bytes, int]],
        script: list[str],
        rate: int,
        stats: Stats,
    ) -> None:
        self.audio = audio
        self.script = script  # this call's lines; the emulator gets the same texts
        self.rate = rate
        self.frame_bytes = rate * 2 * FRAME_MS // 1000
        self.silence = bytes(self.frame_bytes)
        self.stats = stats
        self.line_no = 0
        self._speech: bytes = b""
        self._pos = 0
        self._last_voiced_at = -1  # byte offset of the last voiced frame's start
        self.speech_end: float | None = None  # send time of the last voiced frame
        self.spoke = asyncio.Event()
        # Bot audio playout model (client side).
        self.playout_end = 0.0  # loop time the received bot audio finishes playing
        self.received_ms = 0.0
        self.reply_active = False
        self.first_audio = asyncio.Event()
        self.reply_done = asyncio.Event()
        self.ended = asyncio.Event()  # the call is over (either side)
        self.ended_cleanly = False
        self.hanging_up = False  # we hang up: the connection closing is expected
        self.failed: str | None = None
        self._frames = 0
        self.reply_v2v: float | None = None  # v2v of the reply now playing (diagnostics)
        self.said_at: list[float] = []  # loop time each line started
        self.finals: int | None = None  # final transcripts seen (None: not visible)

    # ------------------------------------------------------------- microphone

    def say(self, line: int) -> None:
        """Start saying script line `line` (its audio, then silence)."""
        pcm, last = self.audio[self.script[line]]
        self._speech, self._pos = pcm, 0
        self._last_voiced_at = last * self.frame_bytes
        self.speech_end = None
        self.spoke.clear()
        self.said_at.append(asyncio.get_running_loop().time())
        self.stats.utterances_said += 1

    def count_lost(self, now: float) -> None:
        """Lines said over REPLY_TIMEOUT_S (+ speech) before the end that never came
        back as a final transcript (transports that show transcripts only)."""
        if self.finals is None:
            return
        due = sum(1 for t in self.said_at if now - t > REPLY_TIMEOUT_S + 5.0)
        self.stats.lost_utterances += max(0, due - self.finals)

    async def tick(self, now: float) -> None:
        """Send this caller's next 20 ms frame (speech or silence); `now` is the frame's
        deadline."""
        if self._pos < len(self._speech):
            frame = self._speech[self._pos : self._pos + self.frame_bytes]
            if self._pos == self._last_voiced_at:
                self.speech_end = now
                self.first_audio.clear()
                self.reply_done.clear()
            self._pos += self.frame_bytes
            if self._pos >= len(self._speech):
                self.spoke.set()
        else:
            frame = self.silence
        self._frames += 1
        await self.send_audio(frame, now, self._frames % ACK_EVERY_FRAMES == 0)

    def played_ms(self, now: float) -> float:
        """Bot audio played by now at 1x (ms): received minus what is still ahead of `now`."""
        return self.received_ms - max(0.0, self.playout_end - now) * 1000

    # ------------------------------------------------------------- bot audio

    def on_bot_audio(self, nbytes: int, now: float, *, paced: bool = False) -> None:
        """Count bot audio arriving at `now`: voice-to-voice on a reply's first audio,
        underruns on gaps."""
        dur = nbytes / (self.rate * 2)
        if self.reply_active:
            gap = now - self.playout_end
            limit = AUDIOSOCKET_GAP_S - FRAME_S if paced else UNDERRUN_SLACK_S
            if gap > limit:
                self.stats.underruns += 1
                self.stats.underrun_gaps_ms.append(round(gap * 1000, 1))
        else:
            self.reply_active = True
            if self.speech_end is not None and not self.first_audio.is_set():
                v2v = round((now - self.speech_end) * 1000, 1)
                self.stats.v2v_ms.append(v2v)
                self.stats.v2v_by_line.setdefault(self.line_no, []).append(v2v)
                self.reply_v2v = v2v
                self.stats.v2v_timeline.append((round(now, 3), self.line_no, v2v))
            else:
                self.reply_v2v = None
            self.first_audio.set()
        self.playout_end = max(self.playout_end, now) + dur
        self.received_ms += dur * 1000

    def on_reply_done(self) -> None:
        """The server finished sending this reply (ws: `turn`; telephony: idle line)."""
        self.reply_active = False
        self.reply_done.set()

    def fail(self, why: str) -> None:
        """The call failed (`why`), unless it was already over or this caller was hanging
        up."""
        if self.failed is None and not self.ended.is_set() and not self.hanging_up:
            self.failed = why
        self.ended.set()

    # ------------------------------------------------------------- transport hooks

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        """Send one frame of caller audio (`ack`: also report playback, where the protocol
        has it)."""
        raise NotImplementedError

    async def connect(self) -> None:
        """Open the connection and start the call."""
        raise NotImplementedError

    async def hangup(self) -> None:
        """End the call from the caller's side."""
        raise NotImplementedError

    # ------------------------------------------------------------- the conversation

    async def converse(self, deadline: float) -> None:
        """Talk through the script until `deadline`: each line after the bot's reply, then
        hang up."""
        loop = asyncio.get_running_loop()
        await self._listen(loop)  # the greeting
        while loop.time() < deadline and not self.ended.is_set():
            await sleep_or(PAUSE_AFTER_REPLY_S, self.ended)
            if self.line_no >= len(self.script):
                # All said (booked): the bot says goodbye and hangs up; if it does not
                # (the conversation went another way), the caller hangs up.
                await sleep_or(HANGUP_WAIT_S, self.ended)
                return
            if self.ended.is_set() or loop.time() >= deadline:
                return
            self.say(self.line_no)
            self.line_no += 1
            await wait_or(self.spoke, self.ended, 60)
            if self.speech_end is None or self.ended.is_set():
                continue
            if not await wait_or(self.first_audio, self.ended, REPLY_TIMEOUT_S):
                if not self.ended.is_set():
                    self.stats.no_reply += 1
                continue
            self.stats.replies += 1
            await self._listen(loop)

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the reply has been sent and the local buffer has played it out."""
        await wait_or(self.reply_done, self.ended, REPLY_END_TIMEOUT_S)
        while not self.ended.is_set() and self.playout_end > loop.time():
            await sleep_or(self.playout_end - loop.time() + 0.001, self.ended)


async def wait_or(ev: asyncio.Event, other: asyncio.Event, limit_s: float) -> bool:
    """Wait for `ev`; False when `other` is set first or on timeout."""
    if ev.is_set():
        return True
    a, b = asyncio.ensure_future(ev.wait()), asyncio.ensure_future(other.wait())
    try:
        await asyncio.wait({a, b}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        a.cancel()
        b.cancel()
    return ev.is_set()


async def sleep_or(seconds: float, ev: asyncio.Event) -> None:
    """Wait `seconds`, or less when `ev` is set first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ev.wait(), max(0.0, seconds))
