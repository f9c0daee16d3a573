"""The session event model (seed 003): one global monotonic `seq` per session, segments
with an id, a revision and a partial flag, turns with the bot's text.

Events are plain JSON-ready dicts because every consumer (browser, simulate JSON, logs)
wants exactly that; `EventLog` stamps `seq`, counts types for the `done` summary and
forwards to the transport.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from voicebot.providers.base import Word

Event = dict[str, Any]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Segment:
    """A caller utterance as it evolves: revisions of one id; `partial=False` locks it."""

    id: str
    text: str = ""
    revision: int = 0
    partial: bool = True
    start_ms: int = 0
    end_ms: int = 0
    # Recognized words with call-audio times (not sent to clients; the echo gate uses them).
    words: tuple[Word, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The segment as the `transcript` event carries it."""
        return {
            "id": self.id,
            "revision": self.revision,
            "partial": self.partial,
            "text": self.text,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


class EventLog:
    """Stamps and delivers session events. Delivery failures never break the call."""

    def __init__(self, session_id: str, sink: Callable[[Event], Awaitable[None]]) -> None:
        self.session_id = session_id
        self._sink = sink
        self._seq = 0
        self.counts: Counter[str] = Counter()
        self.listeners: list[Callable[[Event], None]] = []
        self.dropped = 0  # events the transport failed to deliver

    async def emit(self, type_: str, **fields: Any) -> Event:
        """Stamp `seq`, count the type, notify listeners and deliver to the transport
        (failures logged)."""
        self._seq += 1
        event: Event = {"type": type_, "seq": self._seq, **fields}
        self.counts[type_] += 1
        for listener in self.listeners:
            listener(event)
        try:
            await self._sink(event)
        except Exception as exc:  # a closed socket must not kill the call flow
            self.dropped += 1
            # The first one says why; the rest of a dead socket's stream is noise.
            level = logging.WARNING if self.dropped == 1 else logging.DEBUG
            log.log(
                level,
                "%s: event %s not delivered (%s: %s)",
                self.session_id,
                type_,
                type(exc).__name__,
                exc,
                exc_info=self.dropped == 1,
            )
        return event

    def transcript(self, segment: Segment) -> Awaitable[Event]:
        """Emit a `transcript` event for `segment`."""
        return self.emit("transcript", segment=segment.as_dict())

    def summary(self) -> Mapping[str, int]:
        """Events emitted per type (for the `done` summary)."""
        return dict(self.counts)
