"""`booking:` is parsed in one place (booking/settings.py): typed, unknown keys refused."""

from __future__ import annotations

import pytest

from booking.settings import DEFAULT_STORE, BookingSettings
from voicebot.config import load_config


def test_the_shipped_config_parses() -> None:
    s = BookingSettings.parse(load_config(env={}).domain["booking"])
    assert s.use_llm == "auto" and s.llm_timeout_s == 1.5 and s.max_silence_prompts == 3
    assert s.backend == "local"
    assert s.catalog.salon.name == "Стиль"
    assert s.public_info() == {
        "name": "Стиль",
        "address": "Москва, улица Пушкина, дом 10",
        "timezone": "Europe/Moscow",
    }


def test_defaults_and_the_store_override() -> None:
    assert BookingSettings.parse(None).store == DEFAULT_STORE
    s = BookingSettings.parse({"store": "sqlite:///a.db"}, store_override="sqlite:///b.db")
    assert s.store == "sqlite:///b.db"
    assert "webhook" not in repr(BookingSettings.parse({"webhook_url": "http://x/?token=t"}))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"use_lm": "never"}, "booking.use_lm"),
        ({"use_llm": "sometimes"}, "booking.use_llm"),
        ({"llm_timeout_s": "soon"}, "booking.llm_timeout_s"),
        ({"max_silence_prompts": [3]}, "booking.max_silence_prompts"),
    ],
)
def test_bad_keys_are_start_up_errors(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BookingSettings.parse(section)
