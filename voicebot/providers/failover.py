"""Failover across speech recognizers: when one vendor fails, the next stream goes to the next.

The call engine already survives a lost stream: it reopens one and replays the caller's
audio since the last end of utterance. So failover needs no engine support: this
composite watches the errors its streams raise and, on a credentials or quota failure
(or `loss_threshold` connection losses in a row with no result in between), makes the
*next* `open_stream` use the next provider. The failing stream's error is re-raised as
retriable, so the engine's ordinary reconnect moves the live call over without dropping it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from voicebot.providers.base import (
    AuthError,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
    RecognitionStream,
    SpeechRecognizer,
    StatusCode,
    StreamLimitError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Switch:
    """One provider change, for logs, metrics and tests."""

    from_provider: str
    to_provider: str
    reason: str
    at: float  # time.monotonic()


def is_fatal(err: ProviderError) -> bool:
    """Errors that retrying the same provider will not fix."""
    if isinstance(err, StreamLimitError):
        return False  # a per-stream cap (rotation), nobody's failure
    return isinstance(err, (AuthError, RateLimitError)) or not err.retriable


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
        loss_threshold: int = 2,
        on_switch: Callable[[Switch], None] | None = None,
        owns: Sequence[SpeechRecognizer] | None = None,
    ) -> None:
        if not recognizers:
            raise ValueError("FailoverRecognizer needs at least one recognizer")
        self.recognizers = list(recognizers)
        self.loss_threshold = max(1, loss_threshold)
        self.on_switch = on_switch
        self.switches: list[Switch] = []
        # What aclose() closes: by default all; a shared recognizer stays with its owner.
        self._owned = list(recognizers if owns is None else owns)
        self._index = 0
        self._losses = 0

    def for_call(self) -> FailoverRecognizer:
        """A fresh view for one call: same clients, its own position and loss count."""
        return FailoverRecognizer(
            self.recognizers,
            loss_threshold=self.loss_threshold,
            on_switch=self._record_switch,
            owns=(),
        )

    def _record_switch(self, sw: Switch) -> None:
        self.switches.append(sw)
        if self.on_switch is not None:
            self.on_switch(sw)

    @property
    def current(self) -> SpeechRecognizer:
        return self.recognizers[self._index]

    @property
    def name(self) -> str:
        """The current provider's name: what a new stream will use."""
        return self.current.name

    @property
    def providers(self) -> list[str]:
        return [r.name for r in self.recognizers]

    async def open_stream(self, options: RecognitionOptions) -> RecognitionStream:
        while True:
            index = self._index
            try:
                inner = await self.recognizers[index].open_stream(options)
            except ProviderError as e:
                if self.report_failure(index, e):
                    continue  # try the next provider at once
                raise
            return FailoverStream(self, index, inner)

    def report_failure(self, index: int, err: ProviderError) -> bool:
        """Count a failure of recognizer `index`; True when it made the composite switch."""
        if index != self._index:
            return False  # a stream of a provider we already left
        if is_fatal(err):
            return self._switch(f"{err.code}: fatal")
        if isinstance(err, StreamLimitError):
            return False
        self._losses += 1
        if self._losses >= self.loss_threshold:
            return self._switch(f"{err.code}: {self._losses} connection losses in a row")
        return False

    def report_ok(self, index: int) -> None:
        if index == self._index:
            self._losses = 0

    def _switch(self, reason: str) -> bool:
        if self._index + 1 >= len(self.recognizers):
            log.error(
                "STT %s failed (%s) and no provider is left to fail over to", self.name, reason
            )
            return False
        old = self.name
        self._index += 1
        self._losses = 0
        sw = Switch(old, self.name, reason, time.monotonic())
        self.switches.append(sw)
        log.warning("STT failover: %s -> %s (%s)", old, self.name, reason)
        if self.on_switch is not None:
            self.on_switch(sw)
        return True

    async def aclose(self) -> None:
        for r in self._owned:
            close = getattr(r, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing STT provider %s failed", r.name)


class FailoverStream:
    """A provider's stream that reports its fate to the composite."""

    def __init__(self, owner: FailoverRecognizer, index: int, inner: RecognitionStream) -> None:
        self.owner = owner
        self.index = index
        self.inner = inner
        self.provider = owner.recognizers[index].name

    async def send_audio(self, pcm: bytes) -> None:
        await self.inner.send_audio(pcm)

    async def send_silence(self, duration_ms: int) -> None:
        await self.inner.send_silence(duration_ms)

    async def finish(self) -> None:
        await self.inner.finish()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecognitionEvent]:
        try:
            async for ev in self.inner:
                if not isinstance(ev, StatusCode):
                    self.owner.report_ok(self.index)
                yield ev
        except ProviderError as e:
            if self.owner.report_failure(self.index, e):
                raise ProviderError(
                    f"{self.provider} failed ({e.code}); switching to {self.owner.name}",
                    code="FAILOVER",
                    retriable=True,
                    provider=self.provider,
                ) from e
            raise
