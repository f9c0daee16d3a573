"""The caller's name: «меня зовут Анна», «меня Света зовут», «меня Мариной зовут»,
«зовут, эээ, Алексей», «это Олег», «я Наталья», or a bare «Анна» when the bot asked.

Fillers and discourse words («ну», «эээ», «в общем», «короче», «я», «в») are skipped,
never taken as a name. Oblique forms are put into the nominative by pymorphy3's
first-name dictionary («Мариной» → «Марина»).
"""

from __future__ import annotations

from booking.extract.text import Token, fold, morph, tokenize

FILLERS = {
    "ну",
    "э",
    "ээ",
    "эээ",
    "ээээ",
    "эм",
    "эмм",
    "ммм",
    "мм",
    "а",
    "в",
    "общем",
    "короче",
    "значит",
    "так",
    "вот",
    "типа",
    "как",
    "бы",
    "это",
    "я",
    "меня",
    "мое",
    "моё",
    "имя",
    "зовут",
    "да",
    "нет",
    "ага",
    "угу",
    "слушайте",
    "алло",
    "девушка",
    "вообще",
    "собственно",
    "просто",
    "же",
    "вроде",
    "кстати",
    "сказать",
    "точнее",
    "то",
    "есть",
}
_NOT_NAMES = FILLERS | {
    "хочу",
    "хотел",
    "хотела",
    "буду",
    "могу",
    "не",
    "записаться",
    "звоню",
    "по",
    "уже",
    "вам",
    "был",
    "была",
    "опять",
    "снова",
    "телефон",
    "номер",
    "можно",
    "пожалуйста",
    "здравствуйте",
    "добрый",
    "спасибо",
    "хорошо",
    "записывайте",
}
_MASTER_MARKERS = {"к", "ко", "у", "мастер", "мастеру", "мастера", "мастером"}
_CALL_VERBS = {"зовут", "звать", "зови", "зовите"}


def name_form(word: str) -> str | None:
    """Nominative, capitalized, if pymorphy knows `word` as a first name (any parse:
    «Света» is mostly the genitive of «свет», but here it is said as a name)."""
    if fold(word) in _NOT_NAMES or len(word) < 2:
        return None
    parses = [p for p in morph().parse(word) if "Name" in p.tag]
    if not parses:
        return None
    if any("nomn" in p.tag for p in parses):
        # «Арина» is also a form of «Арин»: a nominative reading keeps the word as said.
        return word[:1].upper() + word[1:].lower()
    nom = parses[0].normal_form
    if "ё" in nom and "ё" not in word.lower():
        nom = nom.replace("ё", "е")  # said «Петра» → «Петр», as the caller spells it
    return nom.capitalize()


def _next_word(toks: list[Token], i: int, step: int) -> int | None:
    """The first non-filler word from `i` in direction `step`."""
    while 0 <= i < len(toks):
        if fold(toks[i].text) not in FILLERS and not toks[i].is_number:
            return i
        i += step
    return None


def _as_name(tok: Token, *, strict: bool) -> str | None:
    known = name_form(tok.text)
    if known is not None:
        return known
    if strict or fold(tok.text) in _NOT_NAMES or len(tok.text) < 2:
        return None
    if morph().word_is_known(tok.norm):
        return None  # «зовут стрижку»: a known common word is not a name
    return tok.text.capitalize()


def find_name(text: str, *, expecting: bool = False) -> tuple[str, tuple[int, int]] | None:
    """The name and its span. Without `expecting`, only an explicit introduction counts."""
    toks = tokenize(text)
    for i, t in enumerate(toks):
        n = t.norm
        if n in _CALL_VERBS or n == "имя":
            j = _next_word(toks, i + 1, 1)
            if j is not None and (got := _as_name(toks[j], strict=False)) is not None:
                if n != "имя" or name_form(toks[j].text):
                    return got, (toks[j].start, toks[j].end)
            # «меня Света зовут», «меня, короче, Дима зовут», «Света меня зовут»
            j = _next_word(toks, i - 1, -1)
            if j is not None and (got := _as_name(toks[j], strict=True)) is not None:
                return got, (toks[j].start, toks[j].end)
        if n in {"это", "я"}:
            j = _next_word(toks, i + 1, 1)
            if j is not None and j <= i + 3 and (got := _as_name(toks[j], strict=True)):
                return got, (toks[j].start, toks[j].end)
    if expecting:
        for i, t in enumerate(toks):
            if i and toks[i - 1].norm in _MASTER_MARKERS:
                continue  # «к Пете», «у Ивана»: a master, not the caller
            if (known := name_form(t.text)) is not None:
                return known, (t.start, t.end)
        words = [t for t in toks if not t.is_number and fold(t.text) not in _NOT_NAMES]
        if len(words) == 1 and len(words[0].text) > 1 and not morph().word_is_known(words[0].norm):
            # A name pymorphy does not know («Эмиль»); a known word («наверное») is not one.
            return words[0].text.capitalize(), (words[0].start, words[0].end)
    return None


def find_name_like(text: str, not_these: frozenset[str] = frozenset()) -> str | None:
    """A first name said without an introduction («Стрижка завтра в 12, Светлана»):
    a word whose most likely reading is a first name (so not «Вера», «Роман»,
    «Слава», which are mostly common words), not after «к»/«у»/«мастер», and not one
    of `not_these` (folded names of the masters). Nominative, as said."""
    toks = tokenize(text)
    for i, t in enumerate(toks):
        if t.is_number or t.norm in _NOT_NAMES or t.norm in not_these:
            continue
        if i and toks[i - 1].norm in _MASTER_MARKERS:
            continue
        top = morph().parse(t.text)[0]
        if "Name" in top.tag and top.score >= 0.5 and fold(top.normal_form) not in not_these:
            return name_form(t.text)
    return None
