"""Failover across speech recognizers: new streams go to the current provider of a chain.

The engine's recognizer owns recovery (`voicebot/engine/recovery.py` decides when to
fail over); this composite only holds the ordered providers and which one new streams
use. It opens each inner stream with zero retries and hands it over as is; when the
engine decides to fail over it calls `fail_over`, and the engine's ordinary reconnect
moves the live call to the next provider, replaying the caller's audio since the last
end of utterance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voicebot.ops import metrics
from voicebot.providers.base import RecognitionOptions, RecognitionStream, SpeechRecognizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Switch:
    """One provider change, for logs, metrics and tests."""

    from_provider: str
    to_provider: str
    reason: str
    at: float  # time.monotonic()


class FailoverRecognizer:
    """A `SpeechRecognizer` over an ordered list of recognizers; `current` says which one
    new streams use. It moves forward only (the last one stays, failing or not).

    Failover state belongs to one call: the runtime keeps a process-wide instance (which
    owns and closes the clients) and gives each call its own `for_call()` view, so one
    call's failures never move another call, and every new call tries the preferred
    provider first.
    """

    def __init__(
        self,
        recognizers: Sequence[SpeechRecognizer],
        *,
        on_switch: Callable[[Switch], None] | None = None,
        owns: Sequence[SpeechRecognizer] | None = None,
    ) -> None:
        if not recognizers:
            raise ValueError("FailoverRecognizer needs at least one recognizer")
        self.recognizers = list(recognizers)
        self.on_switch = on_switch
        self.switches: list[Switch] = []
        # What aclose() closes: by default all; a shared recognizer stays with its owner.
        self._owned = list(recognizers if owns is None else owns)
        self._index = 0

    def for_call(self) -> FailoverRecognizer:
        """A fresh view for one call: same clients, its own position."""
        return FailoverRecognizer(self.recognizers, on_switch=self._record_switch, owns=())

    def _record_switch(self, sw: Switch) -> None:
        self.switches.append(sw)
        if self.on_switch is not None:
            self.on_switch(sw)

    @property
    def current(self) -> SpeechRecognizer:
        """The recognizer new streams use."""
        return self.recognizers[self._index]

    @property
    def name(self) -> str:
        """The current provider's name: what a new stream will use."""
        return self.current.name

    @property
    def providers(self) -> list[str]:
        """Every provider's name, in failover order."""
        return [r.name for r in self.recognizers]

    async def open_stream(self, options: RecognitionOptions) -> RecognitionStream:
        """A stream of the current provider (no retries; its errors are the engine's)."""
        return await self.current.open_stream(options)

    def fail_over(self, reason: str) -> bool:
        """Move new streams to the next provider; False when none is left."""
        if self._index + 1 >= len(self.recognizers):
            log.error(
                "STT %s failed (%s) and no provider is left to fail over to", self.name, reason
            )
            return False
        old = self.name
        self._index += 1
        sw = Switch(old, self.name, reason, time.monotonic())
        self.switches.append(sw)
        log.warning("STT failover: %s -> %s (%s)", old, self.name, reason)
        metrics.stt_stream_event("failover")
        if self.on_switch is not None:
            self.on_switch(sw)
        return True

    async def aclose(self) -> None:
        """Close the recognizers this instance owns."""
        for r in self._owned:
            close = getattr(r, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing STT provider %s failed", r.name)
