"""Measures how long a turn waits on the language model, so engine overhead can be
reported separately from provider time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from voicebot.providers.base import ChatMessage, Completion, GenerationOptions, LanguageModel


class MeteredLanguageModel:
    """A transparent LanguageModel proxy that accumulates time spent awaiting it."""

    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.wait_ms = 0.0
        self.calls = 0

    def reset(self) -> None:
        self.wait_ms = 0.0

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> Completion:
        t = time.perf_counter()
        self.calls += 1
        try:
            return await self.inner.complete(messages, options)
        finally:
            self.wait_ms += (time.perf_counter() - t) * 1000

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> AsyncIterator[str]:
        self.calls += 1
        it = self.inner.stream(messages, options).__aiter__()
        while True:
            t = time.perf_counter()
            try:
                delta = await it.__anext__()
            except StopAsyncIteration:
                self.wait_ms += (time.perf_counter() - t) * 1000
                return
            self.wait_ms += (time.perf_counter() - t) * 1000
            yield delta
