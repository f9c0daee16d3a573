"""SentenceSplitter: whole sentences, and a long first sentence cut at a comma."""

from __future__ import annotations

from voicebot.engine.sentences import SentenceSplitter

READBACK = (
    "Записываю вас на стрижку к мастеру Анне завтра, 21 ноября, в 10:00. "
    "Имя Ольга, телефон +7 913 555-10-10. Всё верно?"
)


def split_all(text: str, **kw: int) -> list[str]:
    s = SentenceSplitter(**kw)
    out = s.push(text)
    if rest := s.flush():
        out.append(rest)
    return out


def test_long_first_sentence_is_cut_at_its_first_comma_only() -> None:
    assert split_all(READBACK) == [
        "Записываю вас на стрижку к мастеру Анне завтра,",
        "21 ноября, в 10:00.",
        "Имя Ольга, телефон +7 913 555-10-10.",
        "Всё верно?",
    ]


def test_streamed_first_sentence_is_cut_as_soon_as_the_comma_is_followed() -> None:
    s = SentenceSplitter()
    out: list[str] = []
    words = READBACK.split(" ")
    emitted_at = None
    for i, w in enumerate(words):
        got = s.push(w + " ")
        if got and emitted_at is None:
            emitted_at = i
        out += got
    out.append(s.flush())
    assert out[0] == "Записываю вас на стрижку к мастеру Анне завтра,"
    assert words[emitted_at] == "21"  # the first word after the comma, not the period
    assert "".join(out).replace(" ", "") == READBACK.replace(" ", "")


def test_short_heads_and_later_sentences_stay_whole() -> None:
    text = "Хорошо, Анна. На какой день вас записать, на завтра или на послезавтра, или позже?"
    assert split_all(text) == [
        "Хорошо, Анна.",
        "На какой день вас записать, на завтра или на послезавтра, или позже?",
    ]
    # A comma at the very end of the text so far may end it: no cut yet.
    s = SentenceSplitter()
    assert s.push("Записываю вас на стрижку к мастеру Анне завтра,") == []


def test_numbers_are_not_cut_and_the_cut_can_be_turned_off() -> None:
    text = "Стрижка стоит полторы тысячи рублей, это 1,5 тысячи за час работы мастера."
    assert split_all(text)[0] == "Стрижка стоит полторы тысячи рублей,"
    assert split_all(text, first_clause_chars=0) == [text]
