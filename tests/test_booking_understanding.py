"""Whole-utterance understanding (`booking.extract.extract`): names, masters, phones,
yes/no and negation, the kinds of failure of issue #11, each in several phrasings."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from booking.catalog import Catalog
from booking.extract import extract
from booking.extract.intents import find_answer, find_intents
from booking.extract.phone import apply_fix, group_digits, join_fragments, phone_fragment

CATALOG = Catalog.from_config(None)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Europe/Moscow"))
TODAY = NOW.date()


def ex(text: str, expecting: str | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return extract(text, CATALOG, TODAY, expecting, now=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expecting", "name"),
    [
        ("Здравствуйте, я, в общем, хочу подстричься завтра в 12", None, None),
        ("Меня зовут, эээ, Алексей", None, "Алексей"),
        ("меня, короче, Дима зовут", None, "Дима"),
        ("Меня Света зовут, стрижку на завтра", None, "Света"),
        ("меня Мариной зовут", None, "Марина"),
        ("Света меня зовут", None, "Света"),
        ("ну, это Олег", None, "Олег"),
        ("Имя Ольга", None, "Ольга"),
        ("меня зовут Арина", None, "Арина"),
        ("Эээ", "name", None),
        ("ну", "name", None),
        ("В", "name", None),
        ("в общем", "name", None),
        ("короче", "name", None),
        ("Эээ, Алексей", "name", "Алексей"),
        ("Эмиль", "name", "Эмиль"),
        ("наверное", "name", None),
        ("я", "name", None),
    ],
)
def test_names_never_fillers(text: str, expecting: str | None, name: str | None) -> None:
    assert ex(text, expecting).name == name


def test_the_name_keeps_the_other_slots() -> None:
    got = ex("Меня Света зовут, стрижку на завтра в полпятого")
    assert (got.name, got.service, got.date, got.time) == (
        "Света",
        "haircut",
        date(2026, 11, 24),
        time(16, 30),
    )


@pytest.mark.parametrize(
    ("text", "expecting", "name", "master"),
    [
        ("Здравствуйте, меня Пётр зовут, хочу постричься завтра в 14:00", None, "Пётр", None),
        ("Меня зовут Иван, хочу к Петру", None, "Иван", "Петр"),
        ("Сергей", "name", "Сергей", None),
        ("я Сергей, запишите к мастеру Ивану", None, "Сергей", "Иван"),
        ("мастер Пётр свободен?", None, None, "Петр"),
        ("к Петру", None, None, "Петр"),
        ("у Петра", None, None, "Петр"),
    ],
)
def test_a_callers_name_equal_to_a_masters_is_the_callers(
    text: str, expecting: str | None, name: str | None, master: str | None
) -> None:
    got = ex(text, expecting)
    assert (got.name, got.master) == (name, master)


@pytest.mark.parametrize(
    ("text", "master"),
    [
        ("Можно к Серёже на стрижку?", "Сергей"),
        ("запишите к Серёже", "Сергей"),
        ("к Сереге", "Сергей"),
        ("к Ване", "Иван"),
        ("у Пети есть время?", "Петр"),
        ("к Петеньке", None),  # not a known form: not guessed
    ],
)
def test_diminutives_find_the_master(text: str, master: str | None) -> None:
    assert ex(text).master == master


def test_per_master_aliases_from_config() -> None:
    cat = Catalog.from_config(
        {"masters": [{"name": "Сергей", "aliases": ["Серый"]}, {"name": "Иван"}]}
    )
    assert extract("к Серому на завтра", cat, TODAY).master == "Сергей"
    with pytest.raises(ValueError, match="unknown key"):
        Catalog.from_config({"masters": [{"name": "Иван", "alias": ["Ваня"]}]})
    with pytest.raises(ValueError, match="aliases"):
        Catalog.from_config({"masters": [{"name": "Иван", "aliases": "Ваня"}]})


@pytest.mark.parametrize(
    ("pieces", "want"),
    [
        (["8 916", "123-45-67"], "+79161234567"),
        (["8 916", "123", "45 67"], "+79161234567"),
        (["+7 916", "210 33 44"], "+79162103344"),
        (["916", "1234567"], "+79161234567"),
        (["восемь"], None),
    ],
)
def test_phone_pieces_join(pieces: list[str], want: str | None) -> None:
    buf, got = "", None
    for p in pieces:
        part = phone_fragment(p)
        if part is None:
            break
        got = join_fragments(buf, part)
        buf = buf + part.lstrip("+") if buf else part
    assert got == want


def test_phone_pieces() -> None:
    """Any digits are a piece while the phone is being collected; elsewhere only the
    start of a mobile number is («Ольга, 8 916»), never a time («в 15 30»)."""
    assert ex("8 916", "phone").phone_part == "8916"
    assert ex("123", "phone").phone_part == "123"
    assert ex("Ольга, 8 916", "name").phone_part == "8916"
    assert ex("Ольга, 8 916", "name").name == "Ольга"
    got = ex("в 15 30", "time")
    assert (got.phone_part, got.time) == (None, time(15, 30))
    assert ex("123", "time").phone_part is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("8 916 123-45-67, ой, не 67, а 76", "+79161234576"),
        ("+7 916 123 45 67, нет, не 45, а 54", "+79161235467"),
        ("8 916 123-45-67, нет, 45-76", "+79161234576"),
        ("8 916 123-45-67, ой, нет, 76", "+79161234576"),
        ("+7 916 123 45 67 точнее 123 45 77", "+79161234577"),
    ],
)
def test_phone_self_correction_replaces_the_right_part(text: str, want: str) -> None:
    assert ex(text, "phone").phone == want


def test_phone_fix_later_and_readback_groups() -> None:
    got = ex("нет, не 67, а 76", "confirm")
    assert got.phone_fix == ("67", "76") and got.time is None and got.unplaced == ()
    assert apply_fix("+79161234567", "67", "76") == "+79161234576"
    assert apply_fix("+79161234567", "99", "76") is None
    assert ex("нет, не в 4, а в 5", "confirm").phone_fix is None
    assert ex("нет, 45-76", "confirm").phone_fix == ("", "4576")
    assert ex("нет, 15", "confirm").phone_fix is None  # too short to be the phone's tail
    assert apply_fix("+79161234567", "", "4576") == "+79161234576"
    assert group_digits("8916210") == "8 916 210"
    assert group_digits("+7916") == "+7 916"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("да", "yes"),
        ("Да-да", "yes"),
        ("да-да, всё так", "yes"),
        ("ага", "yes"),
        ("угу", "yes"),
        ("конечно", "yes"),
        ("всё верно", "yes"),
        ("записывайте", "yes"),
        ("можно", "yes"),
        ("нет", "no"),
        ("А можно узнать, сколько это будет стоить?", None),
        ("а можно к другому мастеру?", None),
        ("Можно вопрос?", None),
        ("скажите адрес", None),
        ("да, а сколько стоит?", "yes"),
        ("Да нет, не так", "no"),
        ("А сколько по времени?", None),
        ("ну да", "yes"),
        ("так точно", "yes"),
        ("договорились", "yes"),
    ],
)
def test_only_a_real_yes_confirms(text: str, want: str | None) -> None:
    assert find_answer(text) == want


@pytest.mark.parametrize(
    ("text", "current", "service"),
    [
        ("Нет, только стрижку, без бороды", "haircut_beard", "haircut"),
        ("без бороды", "haircut_beard", "haircut"),
        ("давайте без бороды", "haircut_beard", "haircut"),
        ("стрижку, но без укладки", None, "haircut"),
        ("только стрижку", "haircut_beard", "haircut"),
        ("без бороды", "haircut", None),
        ("Бороду не надо, только стрижку", "haircut_beard", "haircut"),
        ("бороду не надо", "haircut_beard", "haircut"),
        ("не надо бороду", "haircut_beard", "haircut"),
    ],
)
def test_negation_changes_the_order(text: str, current: str | None, service: str | None) -> None:
    assert ex(text, current_service=current).service == service


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("А во сколько вы закрываетесь?", "hours"),
        ("до скольки вы работаете?", "hours"),
        ("когда вы открываетесь", "hours"),
        ("какой у вас адрес?", "address"),
        ("сколько стоит стрижка", "price"),
        ("а кто из мастеров работает завтра?", "masters"),
        ("какие мастера есть", "masters"),
        ("какое время свободно?", "free_times"),
        ("Какие окна есть на завтра?", "free_times"),
        ("Вы завтра работаете?", "hours"),
        ("А сколько по времени?", "duration"),
        ("как долго длится стрижка с бородой", "duration"),
        ("До которого часа работаете?", "hours"),
    ],
)
def test_mid_flow_questions(text: str, intent: str) -> None:
    assert intent in find_intents(text)


def test_a_date_number_never_fills_the_time() -> None:
    got = ex("Запишите меня на укладку на 3-е декабря")
    assert (got.date, got.time) == (date(2026, 12, 3), None)


def test_a_master_the_salon_does_not_have_is_reported_not_dropped() -> None:
    got = ex("Стрижка завтра в 12 к Васе")
    assert (got.master, got.master_unknown) == (None, "Вася")
    assert ex("к Ване").master_unknown is None
    assert ex("у вас есть время?").master_unknown is None


def test_a_master_named_when_the_name_is_asked_is_not_the_callers_name() -> None:
    got = ex("ну тогда к Пете", "name")
    assert (got.name, got.master) == (None, "Петр")


@pytest.mark.parametrize(
    ("text", "name_like"),
    [
        ("Стрижка завтра в 12, Светлана", "Светлана"),
        ("Олег, стрижка на завтра", "Олег"),
        ("Стрижка завтра в 12, Иван", "Иван"),  # unmarked: the caller's, not master Иван
        ("к Саше на завтра", None),  # marked: a master, not the caller
        ("Вера в лучшее", None),  # mostly a common word
    ],
)
def test_a_first_name_without_introduction(text: str, name_like: str | None) -> None:
    assert ex(text).name_like == name_like


def test_a_phone_piece_can_start_the_number_over() -> None:
    got = ex("ой, нет, 8 926", "phone")
    assert (got.phone_part, got.phone_restart) == ("8926", True)
    assert ex("123", "phone").phone_restart is False
    assert ex("45 67", "phone").phone_restart is False


@pytest.mark.parametrize(
    ("text", "expecting", "have_name", "name_like", "master"),
    [
        ("Пётр, хочу постричься завтра в 14:00", None, False, "Пётр", None),
        ("Пётр, хочу постричься завтра в 14:00", None, True, None, "Петр"),
        ("А Пётр завтра свободен?", None, False, None, "Петр"),
        ("Пётр", "choice", False, None, "Петр"),
        ("нет, не Иван, а Пётр", "confirm", True, None, "Петр"),
        ("хочу к Петру", None, False, None, "Петр"),
    ],
)
def test_an_unmarked_masters_name_is_the_callers_while_the_name_is_missing(
    text: str, expecting: str | None, have_name: bool, name_like: str | None, master: str | None
) -> None:
    got = ex(text, expecting, have_name=have_name)
    assert (got.name_like, got.master) == (name_like, master)
