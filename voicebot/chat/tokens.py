"""Token counts for the chat history budget.

Exact counts come from YandexGPT's own tokenizer (`POST /foundationModels/v1/tokenize`,
quota 50 requests/s — docs/yandex-research.md). A request to it costs a round trip, so
it never runs on the critical path: a message is counted in the background after it is
added, and until its exact count is known the budget uses a documented estimate.

The estimate is deliberately pessimistic for Russian: about 3 characters per token
(YandexGPT's tokenizer averages closer to 4 for Russian prose, so the estimate trims a
little early rather than overflowing the context), plus a fixed overhead per message
for the role markup.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Literal, Protocol

from voicebot.providers.base import ProviderError

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0
MESSAGE_OVERHEAD_TOKENS = 4
CACHE_SIZE = 4096
MAX_API_FAILURES = 3  # then the estimate is used for the rest of the call

TokenizerMode = Literal["api", "estimate"]


class Tokenizer(Protocol):
    """What `TokenCounter` needs from a model client (`YandexGPT.count_tokens`)."""

    async def count_tokens(self, text: str) -> int:
        """Exact tokens of `text` (the model's tokenize endpoint)."""
        ...


def estimate_tokens(text: str) -> int:
    """Tokens of one message by the documented estimate (text plus role overhead)."""
    return MESSAGE_OVERHEAD_TOKENS + math.ceil(len(text) / CHARS_PER_TOKEN)


class TokenCache:
    """Exact counts by text, shared by all calls of one process (bounded, LRU)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._size = size

    def get(self, text: str) -> int | None:
        """The cached count of `text` (None when unknown); marks it recently used."""
        n = self._counts.get(text)
        if n is not None:
            self._counts.move_to_end(text)
        return n

    def put(self, text: str, tokens: int) -> None:
        """Remember `text`'s count, dropping the least recently used beyond the bound."""
        self._counts[text] = tokens
        self._counts.move_to_end(text)
        while len(self._counts) > self._size:
            self._counts.popitem(last=False)


class TokenCounter:
    """Counts of messages: exact where the tokenizer has answered, else the estimate."""

    def __init__(self, tokenizer: Tokenizer | None, mode: TokenizerMode, cache: TokenCache) -> None:
        self._tokenizer = tokenizer if mode == "api" else None
        self._cache = cache
        self._failures = 0
        self.exact = 0  # counts learned from the tokenizer in this call
        self.estimated = 0  # counts that had to use the estimate

    def count(self, text: str) -> int:
        """Tokens of one message now, without I/O."""
        n = self._cache.get(text)
        if n is not None:
            return n
        self.estimated += 1
        return estimate_tokens(text)

    async def learn(self, text: str) -> None:
        """Ask the tokenizer for `text`'s exact count (background; errors only mean the
        estimate stays in use)."""
        if self._tokenizer is None or self._cache.get(text) is not None:
            return
        try:
            n = await self._tokenizer.count_tokens(text)
        except (ProviderError, AttributeError, TimeoutError) as exc:
            self._failures += 1
            if self._failures >= MAX_API_FAILURES:
                log.info("tokenizer unavailable (%r): estimating for the rest of the call", exc)
                self._tokenizer = None
            return
        self.exact += 1
        self._cache.put(text, n + MESSAGE_OVERHEAD_TOKENS)
