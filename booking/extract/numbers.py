"""Russian numbers as callers say them, in words or as SpeechKit digits.

`number_items(tokens)` turns a token list into number items: digits («15»), digit
ordinals («3-е», «10-го»), cardinal words in any case («пяти», «двадцати»), ordinal
words in any case («пятого», «двадцать пятое») and compounds («сорок пять»,
«двадцать пятого»). Values are 0–59 for words (enough for clock times and days of a
month); digits keep their value.

Why hand-made: the word forms come from pymorphy3's lexemes (every case of every
numeral), so only the compounding rule is ours. The numbers-in-words libraries measured
for this (ru-word2number, number-parser; figures in docs/booking.md) read only the
nominative cardinal («двадцать пять»), not «без двадцати», «пятого» or «двадцать пятого»,
which are the forms clock times and dates use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from booking.extract.text import Token, fold, morph

_CARDINALS = {
    "ноль": 0,
    "один": 1,
    "два": 2,
    "три": 3,
    "четыре": 4,
    "пять": 5,
    "шесть": 6,
    "семь": 7,
    "восемь": 8,
    "девять": 9,
    "десять": 10,
    "одиннадцать": 11,
    "двенадцать": 12,
    "тринадцать": 13,
    "четырнадцать": 14,
    "пятнадцать": 15,
    "шестнадцать": 16,
    "семнадцать": 17,
    "восемнадцать": 18,
    "девятнадцать": 19,
    "двадцать": 20,
    "тридцать": 30,
    "сорок": 40,
    "пятьдесят": 50,
}
_ORDINALS = {
    "первый": 1,
    "второй": 2,
    "третий": 3,
    "четвёртый": 4,
    "пятый": 5,
    "шестой": 6,
    "седьмой": 7,
    "восьмой": 8,
    "девятый": 9,
    "десятый": 10,
    "одиннадцатый": 11,
    "двенадцатый": 12,
    "тринадцатый": 13,
    "четырнадцатый": 14,
    "пятнадцатый": 15,
    "шестнадцатый": 16,
    "семнадцатый": 17,
    "восемнадцатый": 18,
    "девятнадцатый": 19,
    "двадцатый": 20,
    "тридцатый": 30,
}
_TENS = {20, 30, 40, 50}
_TENS_NOM = {"двадцать", "тридцать", "сорок", "пятьдесят"}
_UNITS_NOM = {"один", "одна", "одно", "одну", "два", "две", "три", "четыре", "пять", "шесть"}
_UNITS_NOM |= {"семь", "восемь", "девять"}
# Forms a caller uses that the dictionary has only under another word («сорока» is
# also a magpie, «три» also a verb form): listed explicitly, they win.
_EXTRA_CARDINAL = {"сорока": 40, "три": 3, "семь": 7, "двух": 2, "трех": 3}
_DIGIT_ORDINAL_SUFFIXES = {"е", "го", "ого", "ое", "ее", "й", "ой", "ый", "м", "ом", "му"}


@dataclass(frozen=True, slots=True)
class NumberWord:
    """What one word form means as a number."""

    value: int
    ordinal: bool


@lru_cache(maxsize=1)
def word_forms() -> dict[str, NumberWord]:
    """Every inflected form of the numerals above (folded: «ё» → «е»)."""
    forms: dict[str, NumberWord] = {}
    for table, ordinal in ((_CARDINALS, False), (_ORDINALS, True)):
        for lemma_, value in table.items():
            want = "ADJF" if ordinal else "NUMR"
            for p in morph().parse(lemma_):
                if want in p.tag or (not ordinal and "NUMR" not in p.tag and value in {1}):
                    for f in p.lexeme:
                        forms.setdefault(fold(f.word), NumberWord(value, ordinal))
                    break
            forms.setdefault(fold(lemma_), NumberWord(value, ordinal))
    for w, v in _EXTRA_CARDINAL.items():
        forms[w] = NumberWord(v, False)
    return forms


def word_value(norm: str) -> NumberWord | None:
    """The number a folded word form stands for, if any («пятого» → 5, ordinal)."""
    return word_forms().get(norm)


@dataclass(frozen=True, slots=True)
class NumberItem:
    """A number spanning tokens [first, last] (inclusive) of a token list."""

    value: int
    ordinal: bool
    digits: bool
    first: int
    last: int
    start: int  # character offsets in the text
    end: int
    width: int = 0  # digit count as written («05» → 2), 0 for words


def number_items(toks: list[Token], text: str) -> dict[int, NumberItem]:
    """Number items keyed by the index of their first token."""
    out: dict[int, NumberItem] = {}
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.is_number:
            value, last, ordinal = int(t.norm), i, False
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if (
                nxt is not None
                and text[t.end : nxt.start] == "-"
                and nxt.norm in _DIGIT_ORDINAL_SUFFIXES
            ):
                ordinal, last = True, i + 1  # «3-е», «10-го»
            out[i] = NumberItem(
                value, ordinal, True, i, last, t.start, toks[last].end, width=len(t.norm)
            )
            i = last + 1
            continue
        w = word_value(t.norm)
        if w is None:
            i += 1
            continue
        value, ordinal, last = w.value, w.ordinal, i
        if w.value in _TENS and not w.ordinal and i + 1 < len(toks):
            unit = word_value(toks[i + 1].norm)
            if (
                unit is not None
                and 1 <= unit.value <= 9
                # «двадцать пять», «двадцати пяти», «двадцать пятого», but not
                # «без двадцати | шесть» (the minutes, then the hour)
                and (unit.ordinal or (t.norm in _TENS_NOM) == (toks[i + 1].norm in _UNITS_NOM))
            ):
                value, ordinal, last = w.value + unit.value, unit.ordinal, i + 1
        out[i] = NumberItem(value, ordinal, False, i, last, t.start, toks[last].end)
        i = last + 1
    return out
