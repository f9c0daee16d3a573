"""Measures how long a turn waits on the language model, so engine overhead can be
reported separately from provider time. It reads the session's clock, like every other
stage, so the figures stay consistent under `--speed` and in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from voicebot.clock import Clock
from voicebot.providers.base import ChatMessage, Completion, GenerationOptions, LanguageModel


class MeteredLanguageModel:
    """A transparent LanguageModel proxy that accumulates time spent awaiting it."""

    def __init__(self, inner: LanguageModel, clock: Clock) -> None:
        self.inner = inner
        self._clock = clock
        self.name = inner.name
        self.wait_ms = 0.0
        self.calls = 0

    def reset(self) -> None:
        """Start a new turn's LLM wait count."""
        self.wait_ms = 0.0

    async def count_tokens(self, text: str) -> int:
        """The inner model's tokenizer (`AttributeError` when it has none); not
        metered: token counting runs off the critical path."""
        count = getattr(self.inner, "count_tokens", None)
        if count is None:
            raise AttributeError("count_tokens")
        result: int = await count(text)
        return result

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> Completion:
        """One metered completion (the wait counts toward the turn's `llm_wait`)."""
        t = self._clock.monotonic()
        self.calls += 1
        try:
            return await self.inner.complete(messages, options)
        finally:
            self.wait_ms += (self._clock.monotonic() - t) * 1000

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> AsyncIterator[str]:
        """A metered stream: the wait until each delta counts toward the turn's `llm_wait`."""
        self.calls += 1
        it = self.inner.stream(messages, options).__aiter__()
        while True:
            t = self._clock.monotonic()
            try:
                delta = await it.__anext__()
            except StopAsyncIteration:
                self.wait_ms += (self._clock.monotonic() - t) * 1000
                return
            self.wait_ms += (self._clock.monotonic() - t) * 1000
            yield delta
