"""The deterministic extractors on Russian as SpeechKit delivers it (normalized)."""

from __future__ import annotations

from datetime import date, time

import pytest

from booking.catalog import Catalog
from booking.extract import extract
from booking.extract.intents import find_answer, find_choice, find_intents
from booking.extract.names import find_name
from booking.extract.phone import format_phone, mask_phone, normalize_phone, parse_phone
from booking.extract.services import find_master, find_service, find_unoffered, wants_any_master
from booking.extract.times import parse_part_of_day
from booking.extract.when import parse_date, parse_time

CATALOG = Catalog.from_config(None)
MONDAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("хочу подстричься", "haircut"),
        ("запишите на стрижку", "haircut"),
        ("нужно постричься", "haircut"),
        ("стрижку и бороду", "haircut_beard"),
        ("стрижка с бородой", "haircut_beard"),
        ("бороду подровнять", "haircut_beard"),
        ("подровнять бороду", "haircut_beard"),
        ("мне укладку", "styling"),
        ("уложить волосы", "styling"),
        ("не стрижку, а укладку", "styling"),
        ("добрый день", None),
    ],
)
def test_service(text: str, want: str | None) -> None:
    assert find_service(text, CATALOG) == want


def test_unoffered_service() -> None:
    assert find_unoffered("хочу маникюр") == "маникюр"
    assert find_unoffered("хочу стрижку") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("к Ивану", "Иван"),
        ("у Петра", "Петр"),
        ("к Пётру", "Петр"),
        ("Сергей свободен?", "Сергей"),
        ("с Сергеем", "Сергей"),
        ("не к Ивану, а к Петру", "Петр"),
        ("к любому", None),
    ],
)
def test_master(text: str, want: str | None) -> None:
    assert find_master(text, CATALOG) == want


def test_any_master() -> None:
    assert wants_any_master("без разницы к кому")
    assert wants_any_master("к любому мастеру")
    assert not wants_any_master("к Ивану")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("сегодня", date(2026, 11, 23)),
        ("завтра", date(2026, 11, 24)),
        ("послезавтра", date(2026, 11, 25)),
        ("в пятницу", date(2026, 11, 27)),
        ("в понедельник", date(2026, 11, 30)),
        ("в следующую среду", date(2026, 12, 2)),
        ("в эту субботу", date(2026, 11, 28)),
        ("15 декабря", date(2026, 12, 15)),
        ("на 15-е декабря", date(2026, 12, 15)),
        ("1 января", date(2027, 1, 1)),
        ("20 ноября", date(2027, 11, 20)),
        ("через неделю", date(2026, 11, 30)),
        ("через 3 дня", date(2026, 11, 26)),
        ("через два дня", date(2026, 11, 25)),
        ("25.12", date(2026, 12, 25)),
        ("не завтра, а послезавтра", date(2026, 11, 25)),
        ("в 15:30", None),
        ("в 15.30", None),
        ("хочу стрижку", None),
    ],
)
def test_date(text: str, want: date | None) -> None:
    assert parse_date(text, MONDAY) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("в 15:30", time(15, 30)),
        ("в 3 часа дня", time(15, 0)),
        ("в 7 вечера", time(19, 0)),
        ("к десяти утра", time(10, 0)),
        ("к 10 утра", time(10, 0)),
        ("в 9 утра", time(9, 0)),
        ("в 11", time(11, 0)),
        ("в 4", time(16, 0)),
        ("в полдень", time(12, 0)),
        ("в час дня", time(13, 0)),
        ("в половине пятого", time(16, 30)),
        ("в 15 часов 30 минут", time(15, 30)),
        ("на 10", time(10, 0)),
        ("нет, не в 3, а в 4", time(16, 0)),
        ("лучше в 16:00", time(16, 0)),
        ("15 декабря", None),
        ("через 3 дня", None),
        ("через 2 часа", None),
        ("вечером", None),
    ],
)
def test_time(text: str, want: time | None) -> None:
    assert parse_time(text) == want


def test_bare_number_only_when_asked() -> None:
    assert parse_time("11") is None
    assert parse_time("11", bare_number_ok=True) == time(11, 0)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("утром", "morning"),
        ("после обеда", "afternoon"),
        ("вечером", "evening"),
        ("завтра ближе к вечеру, под вечер", "evening"),
        ("в 15:00", None),
    ],
)
def test_part_of_day(text: str, want: str | None) -> None:
    assert parse_part_of_day(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("+7 916 123-45-67", "+79161234567"),
        ("8 916 123 45 67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("8-916-123-45-67", "+79161234567"),
        ("+7 (916) 123-45-67", "+79161234567"),
        ("мой номер 916 123 45 67", "+79161234567"),
        ("12345", None),
    ],
)
def test_phone(text: str, want: str | None) -> None:
    got = parse_phone(text)
    assert (got[0] if got else None) == want


def test_phone_format_and_mask() -> None:
    assert format_phone("+79161234567") == "+7 916 123-45-67"
    assert mask_phone("+79161234567") == "+*********67"
    assert normalize_phone("8 916 123 45 67") == "+79161234567"
    assert normalize_phone("not a phone") is None


@pytest.mark.parametrize(
    ("text", "expecting", "want"),
    [
        ("меня зовут Анна", False, "Анна"),
        ("Моё имя Мария", False, "Мария"),
        ("это Олег", False, "Олег"),
        ("я Наталья", False, "Наталья"),
        ("Анна", True, "Анна"),
        ("Анна", False, None),
        ("я хочу записаться", False, None),
        ("это срочно", False, None),
        ("хочу подстричься, меня зовут Павел", False, "Павел"),
    ],
)
def test_name(text: str, expecting: bool, want: str | None) -> None:
    got = find_name(text, expecting=expecting)
    assert (got[0] if got else None) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("да", "yes"),
        ("Да, всё верно", "yes"),
        ("верно", "yes"),
        ("подтверждаю", "yes"),
        ("нет", "no"),
        ("нет, не в 3, а в 4", "no"),
        ("не так", "no"),
        ("в 15:00", None),
    ],
)
def test_answer(text: str, want: str | None) -> None:
    assert find_answer(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("позовите администратора", {"human"}),
        ("соедините с оператором", {"human"}),
        ("до свидания", {"goodbye"}),
        ("ну всё, пока", {"goodbye"}),
        ("пока не знаю", set()),
        ("сколько стоит стрижка", {"price"}),
        ("какие у вас цены", {"price"}),
        ("до скольки вы работаете", {"hours"}),
        ("какой у вас адрес", {"address"}),
        ("где вы находитесь", {"address"}),
        ("давайте начнём сначала", {"restart"}),
        ("хочу отменить запись", {"cancel_booking"}),
        ("какое время свободно", {"free_times"}),
    ],
)
def test_intents(text: str, want: set[str]) -> None:
    assert set(find_intents(text)) == want


def test_choice() -> None:
    assert find_choice("давайте второй") == 1
    assert find_choice("первый вариант") == 0
    assert find_choice("последний") == -1
    assert find_choice("в 15:00") is None


def test_everything_at_once() -> None:
    ex = extract(
        "Здравствуйте, хочу подстричься завтра в 15:00 к Ивану, меня зовут Анна, "
        "телефон +7 916 123-45-67",
        CATALOG,
        MONDAY,
    )
    assert (ex.service, ex.master, ex.date, ex.time) == (
        "haircut",
        "Иван",
        date(2026, 11, 24),
        time(15, 0),
    )
    assert (ex.name, ex.phone) == ("Анна", "+79161234567")


def test_phone_digits_are_not_times_or_dates() -> None:
    ex = extract("телефон 8 916 123 45 67", CATALOG, MONDAY, "phone")
    assert ex.phone == "+79161234567" and ex.time is None and ex.date is None


def test_callers_name_is_not_a_master() -> None:
    ex = extract("меня зовут Иван", CATALOG, MONDAY)
    assert ex.name == "Иван"
    ex = extract("Иван", CATALOG, MONDAY, "name")
    assert ex.name == "Иван"
