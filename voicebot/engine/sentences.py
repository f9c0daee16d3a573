"""Cut a streamed reply into sentences, so the first one is synthesized while the
rest is still being generated."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … followed by whitespace; "15:30", "3.5" and "т.е." stay whole
# because the terminator must be followed by a space (or the end of the stream).
_END = re.compile(r"(?<=[.!?…])[\"»)]*\s+")
_MIN_CHARS = 12  # don't synthesize "Да." alone when more text is right behind it


class SentenceSplitter:
    def __init__(self, min_chars: int = _MIN_CHARS) -> None:
        self._buf = ""
        self._min = min_chars

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the sentences completed by it."""
        self._buf += delta
        out: list[str] = []
        start = 0
        for m in _END.finditer(self._buf):
            candidate = self._buf[start : m.start()].strip()
            if len(candidate) < self._min:
                continue
            out.append(candidate)
            start = m.end()
        self._buf = self._buf[start:]
        return out

    def flush(self) -> str:
        rest, self._buf = self._buf.strip(), ""
        return rest
