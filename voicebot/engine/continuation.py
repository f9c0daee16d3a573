"""«Waiting for the rest»: an unfinished phrase is held until the caller goes on.

Callers pause inside a phone number («8 916 … 123-45-67») and after words that promise
more («меня зовут…», «на…»). With a fixed EOU pause such a phrase arrives as two
utterances and the bot answers the first half. When the dialogue says the text is
unfinished (`ExpectsMore.expects_more`), the engine holds it for up to
`engine.continuation_wait_ms` (default 1500 ms) and joins whatever utterance follows.
The caller's own voice cancels the timer at once: a local energy onset (`onset.py`,
~60 ms after the caller starts) or the recognizer's first partial, whichever is first.
If that sound turns out to be no speech, the timer is armed again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voicebot.clock import Clock
from voicebot.engine.assembler import Utterance
from voicebot.engine.onset import OnsetDetector


class ContinuationWait:
    """The held utterance and its timer; `on_due` is called when the wait runs out."""

    def __init__(
        self, wait_ms: int, clock: Clock, sample_rate: int, on_due: Callable[[], None]
    ) -> None:
        self.wait_s = wait_ms / 1000
        self._clock = clock
        self._on_due = on_due
        self._onset = OnsetDetector(sample_rate)
        self._timer: asyncio.Task[None] | None = None
        self._paused_at: float | None = None  # when speech cancelled the timer
        self.held: Utterance | None = None
        self.holds = 0  # utterances held
        self.joined = 0  # held utterances joined with what followed
        self.expired = 0  # held utterances answered alone after the wait
        self.onset_cancels = 0  # timers cancelled by the caller's voice

    @property
    def enabled(self) -> bool:
        """True when a wait time is configured."""
        return self.wait_s > 0

    @property
    def prefix(self) -> str:
        """The held words, to put in front of the next partial or final."""
        return self.held.text if self.held is not None else ""

    def join(self, utt: Utterance) -> Utterance:
        """`utt` with the held words in front of it (the hold ends)."""
        held = self.release()
        if held is None:
            return utt
        self.joined += 1
        return Utterance(
            utt.segment_id,
            f"{held.text} {utt.text}",
            held.start_ms,
            utt.end_ms,
            utt.eou_ms,
            held.finals + utt.finals,
        )

    def hold(self, utt: Utterance) -> None:
        """Keep `utt` unanswered and start the wait."""
        self.held = utt
        self.holds += 1
        self._arm()

    def release(self) -> Utterance | None:
        """End the hold; the held utterance, if there was one."""
        self._cancel()
        self._paused_at = None
        held, self.held = self.held, None
        return held

    def expire(self) -> Utterance | None:
        """The wait ran out: the held utterance is answered alone."""
        held = self.release()
        if held is not None:
            self.expired += 1
        return held

    def feed(self, pcm: bytes) -> None:
        """Caller audio (called per frame; costs nothing unless a timer is running)."""
        if self._timer is not None and self._onset.feed(pcm):
            self.onset_cancels += 1
            self.speech()

    def speech(self) -> None:
        """The caller is speaking again: no answer to the first half yet."""
        if self._timer is not None:
            self._cancel()
            self._paused_at = self._clock.monotonic()

    def check(self, recognizer_idle: bool) -> None:
        """Periodic: speech that cancelled the timer produced no words — wait again."""
        if self.held is None or self._timer is not None or self._paused_at is None:
            return
        if recognizer_idle and self._clock.monotonic() - self._paused_at >= self.wait_s:
            self._arm()

    def _arm(self) -> None:
        self._cancel()
        self._paused_at = None
        self._onset.reset()
        self._timer = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        await self._clock.sleep(self.wait_s)
        self._timer = None
        self._on_due()

    def _cancel(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    def close(self) -> None:
        """Stop the timer."""
        self._cancel()
