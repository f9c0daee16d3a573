"""Service and master mentions, matched by lemma so any word form works
(«стрижку», «подстричься», «бороду подровнять», «к Ивану», «у Петра»)."""

from __future__ import annotations

from functools import lru_cache

from booking.catalog import Catalog
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
        if any(negated(toks, lem_at[w][0]) for w in lem):
            continue
        key = (len(lem), pos, sid)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None


def find_unoffered(text: str) -> str | None:
    for t in tokenize(text):
        if lemma(t.norm) in UNOFFERED:
            return t.text.lower()
    return None


def _master_lemma(name: str) -> str:
    return lemma(fold(name))


def master_positions(text: str, catalog: Catalog) -> list[tuple[str, Token, bool]]:
    """(master name, token, denied) for each mention of a master's name."""
    toks = tokenize(text)
    names = {_master_lemma(m.name): m.name for m in catalog.masters}
    out: list[tuple[str, Token, bool]] = []
    for i, t in enumerate(toks):
        if t.is_number:
            continue
        hit = names.keys() & (lemmas(t.norm) | {t.norm})
        if hit:
            out.append((names[sorted(hit)[0]], t, negated(toks, i)))
    return out


def find_master(text: str, catalog: Catalog, *, skip: tuple[int, int] | None = None) -> str | None:
    """The last non-denied master mention outside `skip` (the caller's own name span)."""
    found = None
    for name, tok, neg in master_positions(text, catalog):
        if skip and skip[0] <= tok.start < skip[1]:
            continue
        if not neg:
            found = name
    return found


def wants_any_master(text: str) -> bool:
    low = " " + " ".join(t.norm for t in tokenize(text)) + " "
    return any(f" {p} " in low for p in _ANY_MASTER)
