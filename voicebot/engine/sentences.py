"""Cut a streamed reply into sentences, so the first one is synthesized while the
rest is still being generated.

The first piece of a reply is special: the caller waits for its audio, and synthesis
time to first byte grows with the text (the whole sentence is one request). So a long
first sentence is cut at its first comma once the head is long enough to sound like a
phrase of its own («Записываю вас на стрижку к мастеру Анне завтра, | 21 ноября, в
10:00.»): the head plays while the rest is synthesized. A template head is also the
same in many calls, so a TTS cache can serve it. Later sentences are never cut: they
are synthesized while earlier audio plays.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … followed by whitespace; "15:30", "3.5" and "т.е." stay whole
# because the terminator must be followed by a space (or the end of the stream).
_END = re.compile(r"(?<=[.!?…])[\"»)]*\s+")
# A clause ends at a comma, semicolon or colon followed by whitespace ("1,5" stays whole).
_CLAUSE = re.compile(r"(?<=[,;:])\s+")
_MIN_CHARS = 12  # don't synthesize "Да." alone when more text is right behind it
FIRST_CLAUSE_CHARS = 30  # the first sentence is cut at a comma this far in (0: never)


class SentenceSplitter:
    """Cuts streamed reply text into sentences to synthesize one by one."""

    def __init__(
        self, min_chars: int = _MIN_CHARS, first_clause_chars: int = FIRST_CLAUSE_CHARS
    ) -> None:
        self._buf = ""
        self._min = min_chars
        self._first_clause = first_clause_chars
        self._started = False  # a piece has been returned: no more clause cuts

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the sentences completed by it."""
        self._buf += delta
        out: list[str] = []
        if not self._started and (head := self._first_head()):
            out.append(head)
        start = 0
        for m in _END.finditer(self._buf):
            candidate = self._buf[start : m.start()].strip()
            if len(candidate) < self._min:
                continue
            out.append(candidate)
            start = m.end()
        self._buf = self._buf[start:]
        self._started = self._started or bool(out)
        return out

    def flush(self) -> str:
        """The text left over (the last, unterminated sentence)."""
        rest, self._buf = self._buf.strip(), ""
        return rest

    def _first_head(self) -> str:
        """The first sentence's head up to a comma at least `first_clause_chars` in, once
        some of the sentence's text follows the comma (mid-stream too: the caller need
        not wait for the sentence to end)."""
        if self._first_clause <= 0:
            return ""
        end = _END.search(self._buf)
        sentence = self._buf[: end.start()] if end else self._buf
        for m in _CLAUSE.finditer(sentence):
            head = sentence[: m.start()].strip()
            if len(head) < self._first_clause:
                continue
            if not sentence[m.end() :].strip():
                return ""  # nothing follows the comma yet: it may end the text
            self._buf = self._buf[m.end() :]
            return head
        return ""


def needs_space(prev: str, part: str) -> bool:
    """Template dialogues yield whole sentences; glue them as text, not "Иван.Как"."""
    return bool(prev) and prev[-1] in ".!?…:;," and not part[:1].isspace()


def first_piece(parts: list[str]) -> str:
    """The first piece the engine would synthesize for a reply made of `parts` (glued
    and split exactly as `CallSession` does), or "" for an empty reply."""
    splitter = SentenceSplitter()
    prev = ""
    for part in parts:
        if not part:
            continue
        if needs_space(prev, part):
            part = " " + part
        prev = part
        if out := splitter.push(part):
            return out[0]
    return splitter.flush()
