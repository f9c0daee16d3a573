"""The protected opening of a call: a `Notice` reply part (e.g. the 152-FZ «the call is
recorded») is played in full whatever the caller does.

While the guard is active — the first greeting is still generating its first words, or
its notice sentence is being synthesized or played — caller input (typed text, a
recognized utterance, a silence) is held here instead of cancelling the greeting, and
is handed back, in order, once the notice has played (the rest of the greeting may then
be cut as usual). Barge-in asks `active()` before stopping playback. What the caller
heard is still decided by the playback ledger (`Turn.spoken`), so the transcript holds
the notice as played.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicebot.clock import Clock
from voicebot.engine.turn import SpokenSentence, Turn
from voicebot.transports.base import Playout

POLL_S = 0.02  # how often held input checks whether the notice has played


class NoticeGuard:
    """Holds caller input while a turn's `Notice` sentence has not played in full.

    `deliver(item)` puts a held item back into the session's inbox; `spawn(coro)` runs
    the release waiter as a background task of the session."""

    def __init__(
        self,
        playout: Playout,
        clock: Clock,
        deliver: Callable[[Any], None],
        spawn: Callable[[Any], None],
    ) -> None:
        self._playout = playout
        self._clock = clock
        self._deliver = deliver
        self._spawn = spawn
        self._turn: Turn | None = None
        self._text: str | None = None  # None: the turn has not said anything yet
        self._held: list[Any] = []
        self._waiting = False

    def arm(self, turn: Turn) -> None:
        """The first greeting starts: input waits until its first words are known."""
        self._turn, self._text = turn, None

    def first_text(self, turn: Turn) -> None:
        """`turn` produced text that is not a notice: nothing (more) to protect."""
        if self._turn is turn and self._text is None:
            self._turn = None

    def protect(self, turn: Turn, text: str) -> None:
        """`text` (one sentence of `turn`) is a notice: it must play in full."""
        self._turn, self._text = turn, text

    def active(self) -> bool:
        """Caller input must wait now. Once False, it stays False until the next arm."""
        turn = self._turn
        if turn is None:
            return False
        if turn.status != "pending":  # settled: cancelled, failed or played
            self._turn = None
            return False
        if self._text is None:
            return True
        entry = self._entry(turn, self._text)
        if entry is None:
            return True  # still being synthesized or queued
        if not self._playout.is_playing() or self._playout.played_ms() >= entry.end_ms - 1:
            self._turn = None
            return False
        return True

    def hold(self, item: Any) -> None:
        """Keep `item` until the notice has played, then hand it back."""
        self._held.append(item)
        if not self._waiting:
            self._waiting = True
            self._spawn(self._release())

    async def _release(self) -> None:
        try:
            while self.active():
                await self._clock.sleep(POLL_S)
        finally:
            self._waiting = False
            held, self._held = self._held, []
            for item in held:
                self._deliver(item)

    @staticmethod
    def _entry(turn: Turn, text: str) -> SpokenSentence | None:
        """The notice's ledger entry once all its audio has been queued."""
        return next((s for s in turn.spoken if s.text == text and s.complete), None)
