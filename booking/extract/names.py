"""The caller's name: «меня зовут Анна», «это Олег», «Анна» when the bot asked for it."""

from __future__ import annotations

import re

from booking.extract.text import fold, morph, tokenize

_INTRO = re.compile(
    r"\b(?:меня\s+зовут|зовут\s+меня|зовут|мо[её]\s+имя|имя|это|я)\s*[-—:,]?\s+"
    r"([А-ЯЁа-яё]+(?:-[А-ЯЁа-яё]+)?)",
    re.IGNORECASE,
)
_NOT_NAMES = {
    "хочу",
    "хотел",
    "хотела",
    "бы",
    "буду",
    "могу",
    "не",
    "да",
    "нет",
    "записаться",
    "звоню",
    "по",
    "уже",
    "вам",
    "был",
    "была",
    "опять",
    "снова",
}


def _name_form(word: str) -> str | None:
    """Nominative, capitalized, if pymorphy knows `word` as a first name."""
    for p in morph().parse(word):
        if "Name" in p.tag and p.score >= 0.05:
            return p.normal_form.capitalize()
    return None


def find_name(text: str, *, expecting: bool = False) -> tuple[str, tuple[int, int]] | None:
    """The name and its span. Without `expecting`, only an explicit introduction counts."""
    for m in _INTRO.finditer(text):
        word = m.group(1)
        if fold(word) in _NOT_NAMES:
            continue
        intro = fold(m.group(0).split()[0])
        known = _name_form(word)
        if intro in {"это", "я"} and known is None:
            continue  # «это срочно», «я хочу»: not a name
        return (known or word.capitalize()), m.span(1)
    if expecting:
        toks = tokenize(text)
        for t in toks:
            known = _name_form(t.text)
            if known and fold(t.text) not in _NOT_NAMES:
                return known, (t.start, t.end)
        words = [t for t in toks if not t.is_number]
        if len(words) == 1 and fold(words[0].text) not in _NOT_NAMES and len(words[0].text) > 1:
            return words[0].text.capitalize(), (words[0].start, words[0].end)
    return None
