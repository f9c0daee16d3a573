"""One utterance as tokens plus number items, with a record of which tokens a parser used.

The date and time grammars claim tokens as they match; whatever slot-like token is left
unclaimed is reported as *unplaced* (the coverage rule: nothing the caller said about
when is silently dropped or half-used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from booking.extract.numbers import NumberItem, number_items, word_value
from booking.extract.text import Token, lemma, tokenize

# Words after which a number is a clock time («в 5», «к десяти», «около шести»).
TIME_PREPS = {
    "в",
    "во",
    "к",
    "ко",
    "на",
    "около",
    "примерно",
    "часиков",
    "где-то",
    "часам",
    "районе",
}
NEGATORS = {"не"}
_DAY_WORDS = {"сегодня", "завтра", "послезавтра"}  # «сегодня-завтра» is two days


@dataclass
class Scan:
    """Tokens of one utterance, their number items and the claimed token indexes."""

    text: str
    toks: list[Token] = field(default_factory=list)
    nums: dict[int, NumberItem] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)
    unplaced: list[str] = field(default_factory=list)  # phrases a grammar saw but could not use

    @classmethod
    def of(cls, text: str) -> Scan:
        """Tokenize `text` and find its numbers. Hyphenated words made of numbers
        («пять-шесть», «три-полчетвёртого») are split, so each part is seen."""
        toks: list[Token] = []
        for t in tokenize(text):
            parts = t.norm.split("-")
            if len(parts) > 1 and all(
                word_value(p) is not None or p.startswith("пол") or p in _DAY_WORDS
                for p in parts
                if p
            ):
                at = t.start
                for p in parts:
                    toks.append(Token(text[at : at + len(p)], p, at, at + len(p)))
                    at += len(p) + 1
            else:
                toks.append(t)
        return cls(text, toks, number_items(toks, text))

    def norm(self, i: int) -> str:
        """The folded token at `i`, or "" past either end."""
        return self.toks[i].norm if 0 <= i < len(self.toks) else ""

    def lem(self, i: int) -> str:
        """The lemma of the token at `i`, or ""."""
        return lemma(self.norm(i)) if 0 <= i < len(self.toks) else ""

    def num(self, i: int) -> NumberItem | None:
        """The unclaimed number item starting at token `i`."""
        item = self.nums.get(i)
        if item is None or any(k in self.used for k in range(item.first, item.last + 1)):
            return None
        return item

    def free(self, i: int) -> bool:
        """Whether token `i` exists and is not claimed yet."""
        return 0 <= i < len(self.toks) and i not in self.used

    def claim(self, first: int, last: int) -> None:
        """Mark tokens first..last (inclusive) as used."""
        self.used.update(range(first, last + 1))

    def negated(self, first: int) -> bool:
        """«не в 3», «не завтра», «не к 10-му»: a «не» right before, skipping one
        preposition."""
        for back in (1, 2):
            j = first - back
            if j < 0:
                return False
            if self.norm(j) in NEGATORS:
                return True
            if self.norm(j) not in TIME_PREPS | {"с", "у", "до", "после", "без"}:
                return False
        return False

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Character span of tokens first..last."""
        return self.toks[first].start, self.toks[last].end
