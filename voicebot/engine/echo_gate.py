"""Keeps the bot from hearing itself, word by word, without ignoring the caller.

Bot playback is recorded as intervals on the *call audio* timeline (ms of caller audio
received), so recognized words — SpeechKit v3 gives every alternative `words` with
`start_time_ms`/`end_time_ms`, converted to call time by the assembler — can be checked
exactly against what was playing when they were spoken. Two rules:

* **timing** (gate mode): a word that *starts* while the bot plays or within
  `tail_ms` after its audio ends is echo; a word that starts later is the caller's.
  Only the echo words are dropped, so a caller who answers 200 ms after the bot
  finishes is answered (the seed dropped any utterance touching playback + 500 ms).
* **text** (both modes): `text_min_words` or more consecutive recognized words that
  repeat, in order, words the bot played, each heard no earlier than its bot word
  began (- `ALIGN_EARLY_MS`) and no later than `text_window_ms` (the longest echo
  path, plus the error of our word-time estimate) after that, are
  echo whatever the playback window — echo that outlives the tail (reverb, a late
  jitter buffer) or that the canceller let through in barge-in mode. The alignment
  with the bot's own word times is what tells echo from a caller who repeats an
  offered option ("давайте в 15:00" a second after the bot said "в 15:00").

A recognizer without word times yields one pseudo-word spanning the utterance.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from voicebot.providers.base import Word

_WORD_RE = re.compile(r"\w+(?:[-']\w+)*")


def norm_words(text: str) -> list[str]:
    """Lower-case words without punctuation, ё folded to е (how recognizers spell)."""
    return _WORD_RE.findall(text.lower().replace("ё", "е"))


ALIGN_EARLY_MS = 150  # recognizer word times are this imprecise


@dataclass(slots=True)
class _Playback:
    start_ms: int
    end_ms: int  # -1 while playing
    words: list[tuple[str, int, int]] = field(default_factory=list)  # word, start, end


@dataclass(frozen=True, slots=True)
class EchoSplit:
    """A recognized word sequence split into the caller's words and the echo.

    `timed` are words dropped by the timing rule, `repeated` those dropped by the text
    rule; `caller` keeps the original order."""

    caller: tuple[Word, ...]
    timed: tuple[Word, ...] = ()
    repeated: tuple[Word, ...] = ()

    @property
    def echo(self) -> bool:
        """True when some of the utterance's words were the bot's own echo."""
        return bool(self.timed or self.repeated)


class EchoGate:
    """Bot playback intervals (call-audio ms) and the words the bot said in each."""

    def __init__(
        self,
        tail_ms: int,
        *,
        text_min_words: int = 2,
        text_window_ms: int = 400,
        keep: int = 16,
    ) -> None:
        self.tail_ms = tail_ms
        self.text_min_words = max(1, text_min_words)
        self.text_window_ms = text_window_ms
        self._intervals: deque[_Playback] = deque(maxlen=keep)
        # True while bot audio plays (the last playback has no end yet). Kept, not
        # derived: the session asks for every caller frame.
        self.bot_audible = False
        self.blocked = 0  # utterances dropped whole
        self.dropped_words = 0  # echo words dropped from utterances that were answered

    # ------------------------------------------------------------------ playback

    def bot_started(self, at_ms: int) -> None:
        """Bot audio started at call-audio `at_ms`."""
        if not self.bot_audible:
            self._intervals.append(_Playback(at_ms, -1))
            self.bot_audible = True

    def bot_stopped(self, at_ms: int) -> None:
        """Bot audio stopped at call-audio `at_ms`."""
        if self.bot_audible:
            last = self._intervals[-1]
            last.end_ms = max(at_ms, last.start_ms)
            self.bot_audible = False

    def bot_said(self, text: str, start_ms: int, end_ms: int) -> None:
        """A sentence the bot plays over [start_ms, end_ms) of call time; its words'
        times are spread by length (TTS speaks at a roughly even rate per character)."""
        if not self._intervals:
            return
        words = norm_words(text)
        total = sum(len(w) + 1 for w in words) or 1
        span = max(0, end_ms - start_ms)
        acc = 0
        out = self._intervals[-1].words
        for w in words:
            s = start_ms + span * acc // total
            acc += len(w) + 1
            out.append((w, s, start_ms + span * acc // total))

    def active(self, at_ms: int) -> bool:
        """True while the bot plays or its echo tail lasts."""
        if not self._intervals:
            return False
        end = self._intervals[-1].end_ms
        return end < 0 or at_ms < end + self.tail_ms

    def in_playback(self, at_ms: int) -> bool:
        """Does call time `at_ms` fall inside a playback interval plus the tail?"""
        for p in self._intervals:
            stop = float("inf") if p.end_ms < 0 else p.end_ms + self.tail_ms
            if p.start_ms <= at_ms < stop:
                return True
        return False

    def blocks(self, start_ms: int, end_ms: int) -> bool:
        """Utterance-level check for a recognizer without word times: speech that
        started inside playback + tail is echo."""
        if self.in_playback(start_ms):
            self.blocked += 1
            return True
        return False

    # ------------------------------------------------------------------ words

    def split(self, words: Sequence[Word], *, timing: bool) -> EchoSplit:
        """Apply the text rule (always) and the timing rule (`timing`, gate mode)."""
        repeated = self._repeated(words)
        caller: list[Word] = []
        timed: list[Word] = []
        rep: list[Word] = []
        for i, w in enumerate(words):
            if i in repeated:
                rep.append(w)
            elif timing and self.in_playback(w.start_ms):
                timed.append(w)
            else:
                caller.append(w)
        return EchoSplit(tuple(caller), tuple(timed), tuple(rep))

    def _repeated(self, words: Sequence[Word]) -> set[int]:
        """Indexes of words inside runs of >= text_min_words that repeat bot text."""
        if len(words) < self.text_min_words or not self._intervals:
            return set()
        first = min(w.start_ms for w in words)
        late = self.text_window_ms
        said = [
            p.words
            for p in self._intervals
            if p.words and (p.end_ms < 0 or first < p.end_ms + late)
        ]
        if not said:
            return set()
        heard = [((norm_words(w.text) or [""])[0], w.start_ms) for w in words]
        out: set[int] = set()
        n = self.text_min_words
        for bot in said:
            # Longest run of aligned matches ending at (i, j), one row at a time.
            prev = [0] * (len(bot) + 1)
            for i, (h, at) in enumerate(heard):
                row = [0] * (len(bot) + 1)
                for j, (b, b_start, _end) in enumerate(bot):
                    if h and h == b and b_start - ALIGN_EARLY_MS <= at <= b_start + late:
                        row[j + 1] = prev[j] + 1
                        if row[j + 1] >= n:
                            out.update(range(i - row[j + 1] + 1, i + 1))
                prev = row
        return out
