"""Tokens and lemmas shared by the extractors.

SpeechKit's normalized text is lower/upper-cased unpredictably and mixes «ё»/«е», so
everything is compared case-folded with «ё» → «е», by pymorphy3 lemma where word form
matters («к Ивану», «стрижку»).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pymorphy3

_WORD_RE = re.compile(r"\d{1,2}[:.]\d{2}|\d+|[a-zа-яё]+(?:-[a-zа-яё]+)*", re.IGNORECASE)


@lru_cache(maxsize=1)
def morph() -> pymorphy3.MorphAnalyzer:
    """The shared pymorphy3 analyzer (loaded once, ~100 ms)."""
    return pymorphy3.MorphAnalyzer()


def fold(text: str) -> str:
    """Case-folded with «ё» → «е»."""
    return text.casefold().replace("ё", "е")


@dataclass(frozen=True, slots=True)
class Token:
    """A word or number of an utterance with its character span."""

    text: str  # as said
    norm: str  # folded
    start: int
    end: int

    @property
    def lemma(self) -> str:
        """The most likely lemma of the folded form."""
        return lemma(self.norm)

    @property
    def is_number(self) -> bool:
        """Whether the token is digits only."""
        return self.norm.isdigit()


def tokenize(text: str) -> list[Token]:
    """Words (hyphenated kept whole), digit runs and H:MM / H.MM clock tokens."""
    return [Token(m.group(), fold(m.group()), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


@lru_cache(maxsize=20000)
def lemma(word: str) -> str:
    """The most likely lemma of a folded word (digits unchanged)."""
    if not word or word[0].isdigit():
        return word
    return fold(morph().parse(word)[0].normal_form)


@lru_cache(maxsize=20000)
def lemmas(word: str) -> frozenset[str]:
    """All plausible lemmas of a form («Петра» is both Пётр and Петра)."""
    if not word or word[0].isdigit():
        return frozenset({word})
    return frozenset(fold(p.normal_form) for p in morph().parse(word))


def negated(tokens: list[Token], index: int) -> bool:
    """Whether the mention at `index` is denied: «не в 3», «не завтра», «не к Ивану»."""
    for back in (1, 2):
        j = index - back
        if j < 0:
            return False
        if tokens[j].norm == "не":
            return True
        if tokens[j].norm not in {"в", "к", "на", "у", "с", "во", "ко", "мастеру", "мастера"}:
            return False
    return False
