"""Yes/no answers, picks among offered options, and global intents (questions, handoff,
goodbye, start over, cancel a booking). Phrase lists are plain data: easy to extend."""

from __future__ import annotations

from typing import Literal

from booking.extract.text import lemma, tokenize

YES = {
    "да",
    "ага",
    "угу",
    "верно",
    "правильно",
    "конечно",
    "точно",
    "подтверждаю",
    "согласен",
    "согласна",
    "хорошо",
    "давайте",
    "давай",
    "отлично",
    "ок",
    "окей",
    "записывайте",
    "записывай",
    "годится",
    "подходит",
    "устраивает",
    "да-да",
    "именно",
    "пишите",
    "ладно",
    "идеально",
    "супер",
    "договорились",
    "нормально",
}
# Words that confirm only when they are the whole answer («Можно?» is a question).
_YES_ALONE = {"можно", "можно да"}
# A question or a request for information is never a confirmation.
_QUESTION_WORDS = {"сколько", "какой", "какая", "какие", "когда", "где", "почему", "зачем", "кто"}
_QUESTION_WORDS |= {"узнать", "подскажите", "скажите", "ли", "что"}
NO = {"нет", "неверно", "неправильно", "неа", "не-а"}
_NOT_OK = {"так", "подходит", "верно", "правильно", "устраивает", "надо", "нужно", "совсем"}

INTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "human": (
        "администратор",
        "оператор",
        "живой человек",
        "живым человеком",
        "с человеком",
        "соедините",
        "позовите",
        "менеджер",
        "переключите",
    ),
    "goodbye": (
        "до свидания",
        "всего доброго",
        "всего хорошего",
        "передумал",
        "передумала",
        "не буду записываться",
        "ничего не надо",
        "ничего не нужно",
        "не надо ничего",
        "отбой",
        "прощайте",
    ),
    "restart": (
        "сначала",
        "заново",
        "с начала",
        "начнем снова",
        "начать снова",
    ),
    "price": ("сколько стоит", "сколько стоят", "цена", "цены", "стоимость", "прайс", "почем"),
    "hours": (
        "до скольки",
        "во сколько вы открываетесь",
        "во сколько открываетесь",
        "во сколько закрываетесь",
        "часы работы",
        "режим работы",
        "график работы",
        "время работы",
        "когда вы работаете",
        "когда работаете",
        "как вы работаете",
        "вы работаете",
        "открыты",
    ),
    "address": (
        "адрес",
        "где вы находитесь",
        "где находитесь",
        "где вы",
        "как добраться",
        "как вас найти",
        "где находится",
        "куда ехать",
        "куда подъехать",
    ),
    "duration": (
        "сколько по времени",
        "как долго",
        "сколько длится",
        "сколько времени займет",
        "сколько времени занимает",
        "длительность",
        "долго ли",
    ),
    "services": ("какие услуги", "что вы делаете", "что у вас есть", "какие у вас услуги"),
    "free_times": (
        "какое время свободно",
        "когда свободно",
        "есть свободное",
        "свободные окна",
        "свободное время",
        "какое есть время",
        "что есть свободного",
        "когда можно",
        "какие есть окна",
        "когда есть время",
    ),
}
_CANCEL_VERBS = {"отменить", "отмена", "отменять", "отмениться"}
_CANCEL_OBJECTS = {"запись", "бронь", "бронирование", "визит", "мой", "свой"}
ORDINAL_CHOICES = {
    "первый": 0,
    "второй": 1,
    "третий": 2,
    "последний": -1,
    "ранний": 0,
    "поздний": -1,
}


class _W:
    """A bare word with the `.norm` the answer scan reads."""

    __slots__ = ("norm",)

    def __init__(self, norm: str) -> None:
        self.norm = norm


def _folded_words(text: str) -> str:
    return " " + " ".join(t.norm for t in tokenize(text)) + " "


def _split_repeats(text: str) -> list[str]:
    """«Да-да» → «да», «да»; «не-а» stays one word."""
    out: list[str] = []
    for t in tokenize(text):
        parts = t.norm.split("-")
        if len(parts) > 1 and len(set(parts)) == 1:
            out.extend(parts)
        else:
            out.append(t.norm)
    return out


def find_answer(text: str) -> Literal["yes", "no"] | None:
    """The first decisive word: «нет, не в 3» is a no; «да, но в 4» a yes (plus a change);
    a question («А можно узнать, сколько стоит?») is neither, even with «можно» in it."""
    words = _split_repeats(text)
    if " ".join(words) in _YES_ALONE:
        return "yes"
    asks = "?" in text or bool(set(words) & _QUESTION_WORDS)
    if asks and not (words and words[0] in {"да", "нет", "ага", "угу"}):
        return None
    toks = [_W(w) for w in words]
    if len(words) >= 2 and words[0] == "да" and words[1] in NO:
        return "no"  # «да нет, не так»
    for i, t in enumerate(toks[:4]):
        if t.norm in NO:
            return "no"
        if t.norm == "не" and i + 1 < len(toks) and toks[i + 1].norm in _NOT_OK:
            return "no"
        if t.norm in YES:
            # «давайте в 4» is a request, not a confirmation; still yes-ish.
            return "yes"
        if (
            t.norm in {"все", "всё"}
            and i + 1 < len(toks)
            and (toks[i + 1].norm in YES or toks[i + 1].norm == "так")
        ):
            return "yes"
    return None


def find_intents(text: str) -> frozenset[str]:
    """Global intents and mid-flow questions in `text` (see `INTENT_PHRASES`)."""
    low = _folded_words(text)
    lems = {lemma(t.norm) for t in tokenize(text)}
    found = {
        intent
        for intent, phrases in INTENT_PHRASES.items()
        if any(f" {p} " in low or (" " not in p and lemma(p) in lems) for p in phrases)
    }
    if lems & _CANCEL_VERBS and (lems & _CANCEL_OBJECTS or "хотеть" in lems or len(lems) <= 2):
        found.add("cancel_booking")
    toks = tokenize(text)
    norms = {t.norm for t in toks}
    if "сколько" in norms and norms & {"стоит", "стоят", "стоить", "стоило", "обойдется"}:
        found.add("price")
    if lems & {"закрываться", "открываться", "работать", "закрыться", "открыться"} and norms & {
        "сколько",
        "скольки",
        "когда",
        "до",
    }:
        found.add("hours")
    if "?" in text and "работать" in lems and "вы" in norms and "кто" not in norms:
        found.add("hours")  # «Вы завтра работаете?»
    if (lems & {"мастер"} and norms & {"какие", "какой", "кто", "каких"}) or (
        "кто" in norms and lems & {"работать", "быть"}
    ):
        found.add("masters")
    if lems & {"окно", "свободный", "свободно"} and norms & {
        "какие",
        "какое",
        "когда",
        "что",
        "есть",
    }:
        found.add("free_times")
    if toks and toks[-1].norm == "пока":  # «ну всё, пока», but not «пока не знаю»
        found.add("goodbye")
    return frozenset(found)


def find_choice(text: str) -> int | None:
    """An ordinal pick among offered options («давайте второй» → 1; «последний» → -1)."""
    for t in tokenize(text):
        idx = ORDINAL_CHOICES.get(lemma(t.norm))
        if idx is not None:
            return idx
    return None
