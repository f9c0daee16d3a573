"""A bounded in-memory cache of synthesized sentences, in front of any `SpeechSynthesizer`.

A receptionist bot says the same sentences all day: the greeting, «На какое время вас
записать?», «Как вас зовут?». Each is a TTS stream per call (SpeechKit bills it per
character, its first byte takes ~120 ms, and its ~10 chunks a second are gRPC reads the
server pays for). A sentence synthesized before with the same voice options is played
from memory instead: no request, no wait.

What is kept:
- whole sentences only: a stream that failed or was abandoned (barge-in) is not stored;
- no sentence with a digit in it: times, dates, phone numbers and booking numbers are the
  parts of a reply that differ between callers (caching them would mostly churn the
  cache), and they are personal data that should not outlive the call in memory;
- at most `max_bytes` of audio in all (least recently used out first), and no single
  sentence over an eighth of that, so one long chat answer cannot flush the prompts.
Memory only, never on disk; `yandex.tts.cache_mb: 0` turns it off.

Counted in `voicebot_tts_cache_requests_total{result="hit"|"miss"|"skip"}`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator

from voicebot.ops import metrics
from voicebot.providers.base import SpeechSynthesizer, SynthesisOptions

MAX_ENTRY_SHARE = 8  # one sentence may take at most 1/8 of the cache


def cacheable(text: str) -> bool:
    """True for a sentence the cache may keep: no digits (see the module doc)."""
    return not any(c.isdigit() for c in text)


class CachingSynthesizer:
    """`SpeechSynthesizer` that plays repeated sentences from memory.

    `inner` does the synthesis on a miss; its audio is streamed through as it arrives
    and kept once the stream ends normally. A hit yields the whole sentence's LINEAR16
    audio as one chunk. `max_bytes` bounds the audio held (bytes, all entries).
    """

    def __init__(self, inner: SpeechSynthesizer, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.inner = inner
        self.name = inner.name
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, SynthesisOptions], bytes] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        """LINEAR16 mono PCM at `options.sample_rate`: from memory on a hit, else from
        `inner` (whose errors pass through unchanged)."""
        if not cacheable(text):
            metrics.tts_cache("skip")
            async for chunk in self.inner.synthesize(text, options):
                yield chunk
            return
        key = (text, options)
        audio = self._entries.get(key)
        if audio is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            metrics.tts_cache("hit")
            yield audio
            return
        self.misses += 1
        metrics.tts_cache("miss")
        parts: list[bytes] = []
        async for chunk in self.inner.synthesize(text, options):
            parts.append(chunk)
            yield chunk
        # Reached only when the stream ended normally and the consumer read it all.
        self._store(key, b"".join(parts))

    def _store(self, key: tuple[str, SynthesisOptions], audio: bytes) -> None:
        if not audio or len(audio) > self.max_bytes // MAX_ENTRY_SHARE:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._entries[key] = audio
        self.bytes += len(audio)
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= len(dropped)

    async def aclose(self) -> None:
        """Forget the audio; the inner synthesizer is closed by its owner."""
        self._entries.clear()
        self.bytes = 0
