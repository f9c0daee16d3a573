"""Service and master mentions, matched by lemma so any word form works
(«стрижку», «подстричься», «бороду подровнять», «к Ивану», «у Петра»)."""

from __future__ import annotations

from functools import lru_cache

from booking.catalog import Catalog
from booking.extract.diminutives import DIMINUTIVES
from booking.extract.text import Token, fold, lemma, lemmas, negated, tokenize

# Services callers ask for that a barbershop does not offer: answered, not guessed.
UNOFFERED = {
    "маникюр",
    "педикюр",
    "окрашивание",
    "покраска",
    "покрасить",
    "окрасить",
    "массаж",
    "эпиляция",
    "депиляция",
    "бровь",
    "ресница",
    "макияж",
    "наращивание",
    "татуировка",
    "тату",
    "пирсинг",
    "мелирование",
    "завивка",
    "ламинирование",
    "солярий",
}
_ANY_MASTER = (
    "любой",
    "любому",
    "любого",
    "без разницы",
    "все равно",
    "неважно",
    "не важно",
    "кто свободен",
    "кто угодно",
)
_STOP = {"и", "с", "+", "на", "в"}


@lru_cache(maxsize=64)
def _synonym_lemmas(catalog: Catalog) -> list[tuple[str, frozenset[str]]]:
    out: list[tuple[str, frozenset[str]]] = []
    for s in catalog.services:
        for phrase in (s.name, *s.synonyms):
            lem = frozenset(lemma(t.norm) for t in tokenize(phrase) if t.norm not in _STOP)
            if lem:
                out.append((s.id, lem))
    return out


def find_service(text: str, catalog: Catalog) -> str | None:
    """The catalog id whose synonym matches the most words; later and non-denied wins."""
    toks = tokenize(text)
    lem_at: dict[str, list[int]] = {}
    for i, t in enumerate(toks):
        lem_at.setdefault(lemma(t.norm), []).append(i)
    best: tuple[int, int, str] | None = None  # (words matched, position, id)
    for sid, lem in _synonym_lemmas(catalog):
        if not lem <= lem_at.keys():
            continue
        pos = min(min(lem_at[w]) for w in lem)
        if any(negated(toks, lem_at[w][0]) or _without(toks, lem_at[w][0]) for w in lem):
            continue
        key = (len(lem), pos, sid)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


_NOT_WANTED = {"надо", "нужно", "нужна", "нужен", "буду", "хочу", "будем", "требуется"}


def _without(toks: list[Token], i: int) -> bool:
    """«без бороды», «бороду не надо»: the word is excluded, not asked for."""
    if i > 0 and toks[i - 1].norm == "без":
        return True
    if i > 1 and toks[i - 2].norm == "не" and toks[i - 1].norm in _NOT_WANTED:
        return True  # «не надо бороду»
    return i + 2 < len(toks) and toks[i + 1].norm == "не" and toks[i + 2].norm in _NOT_WANTED


def find_unoffered(text: str) -> str | None:
    """A service the salon does not offer («маникюр»), as said, to answer about."""
    for t in tokenize(text):
        if lemma(t.norm) in UNOFFERED:
            return t.text.lower()
    return None


_MASTER_MARKERS = {"к", "ко", "у", "мастер", "мастеру", "мастера", "мастером", "мастеров"}


@lru_cache(maxsize=64)
def _master_names(catalog: Catalog) -> dict[str, str]:
    """Folded lemma of every name a master answers to → the master's name."""
    out: dict[str, str] = {}
    for m in catalog.masters:
        base = lemma(fold(m.name))
        for alias in (m.name, *m.aliases, *DIMINUTIVES.get(fold(m.name), ())):
            out.setdefault(lemma(fold(alias)), m.name)
            out.setdefault(fold(alias), m.name)
        out[base] = m.name
    return out


def master_positions(text: str, catalog: Catalog) -> list[tuple[str, Token, bool, bool]]:
    """(master name, token, denied, marked) for each mention of a master («к Серёже»:
    marked by «к»; a bare «Пётр» is not marked)."""
    toks = tokenize(text)
    names = _master_names(catalog)
    out: list[tuple[str, Token, bool, bool]] = []
    for i, t in enumerate(toks):
        if t.is_number:
            continue
        hit = names.keys() & (lemmas(t.norm) | {t.norm})
        if hit:
            j = i - 1
            while j >= 0 and toks[j].norm in {"не", "а", "лучше", "только"}:
                j -= 1
            marked = j >= 0 and toks[j].norm in _MASTER_MARKERS
            out.append((names[sorted(hit)[0]], t, negated(toks, i), marked))
    return out


def master_name_forms(catalog: Catalog) -> frozenset[str]:
    """Every folded name and lemma a master answers to («петр», «петя», «сережа»)."""
    return frozenset(_master_names(catalog))


def find_master(
    text: str,
    catalog: Catalog,
    *,
    skip: tuple[int, int] | None = None,
    marked_only: bool = False,
) -> str | None:
    """The last non-denied master mention outside `skip` (the caller's own name span).
    `marked_only`: only mentions marked as a master («к Петру», «мастер Пётр»)."""
    found = None
    for name, tok, neg, marked in master_positions(text, catalog):
        if skip and skip[0] <= tok.start < skip[1]:
            continue
        if marked_only and not marked:
            continue
        if not neg:
            found = name
    return found


def find_unknown_master(text: str, catalog: Catalog) -> str | None:
    """«к Васе» when no master is called that: the name as said (nominative), so the
    bot says there is no such master instead of silently booking another one."""
    from booking.extract.names import name_form  # names imports nothing from here

    toks = tokenize(text)
    names = _master_names(catalog)
    for i, t in enumerate(toks[1:], start=1):
        if toks[i - 1].norm not in _MASTER_MARKERS or t.is_number:
            continue
        if names.keys() & (lemmas(t.norm) | {t.norm}):
            continue
        if (nom := name_form(t.text)) is not None:
            return nom
    return None


def find_service_without(text: str, catalog: Catalog, current: str | None) -> str | None:
    """«без бороды» when the current service has a beard: the service whose name is the
    current one's minus the denied word («Стрижка + борода» − «борода» → Стрижка)."""
    if current is None:
        return None
    toks = tokenize(text)
    denied = {lemma(t.norm) for i, t in enumerate(toks) if _without(toks, i)}
    if not denied:
        return None
    cur = {lemma(t.norm) for t in tokenize(catalog.service(current).name) if t.norm not in _STOP}
    if not cur & denied:
        return None
    rest = cur - denied
    for s in catalog.services:
        if {lemma(t.norm) for t in tokenize(s.name) if t.norm not in _STOP} == rest:
            return s.id
    return None


def wants_any_master(text: str) -> bool:
    """«любой», «без разницы», «кто свободен»: no master preference."""
    low = " " + " ".join(t.norm for t in tokenize(text)) + " "
    return any(f" {p} " in low for p in _ANY_MASTER)
