"""Free questions in a booking call («А парковка у вас есть?»): answered by YandexGPT
from the salon's facts, then the current question again; handed to the admin (a note in
the call record) with `use_llm: never`, when the model fails or has no facts for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from booking.catalog import Catalog
from booking.extract import extract
from booking.faq import HANDOFF, UNKNOWN, is_free_question
from booking.store.base import open_store
from booking.textsim import run_dialogue
from tests.emulator_fixtures import emulator  # noqa: F401  (fixture)
from voicebot.config import GptSettings
from voicebot.emulator import Emulator
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.gpt import YandexGPT

FACTS = {"faq": {"facts": ["Парковка: бесплатная, во дворе салона."], "timeout_s": 2.0}}
SPEC = {
    "name": "faq",
    "now": "2026-11-23T10:00:00+03:00",
    "caller": ["Хочу подстричься завтра в 15:00", "А парковка у вас есть?", "Анна"],
}
ASK_NAME = "Как вас зовут?"


def _gpt(emu: Emulator) -> YandexGPT:
    return YandexGPT(
        emu.http_url,
        ApiKeyAuth(emu.api_key),
        folder_id="b1gtest",
        settings=GptSettings(max_retries=2),
        backoff_s=0.01,
    )


async def _record(store_url: str) -> Any:
    store = open_store(store_url)
    await store.open()
    try:
        return await store.get_call("test-faq")
    finally:
        await store.close()


def test_free_question_detection() -> None:
    catalog = Catalog.from_config(None)
    from datetime import date

    def free(text: str) -> bool:
        return is_free_question(text, extract(text, catalog, date(2026, 11, 23)))

    assert free("А парковка у вас есть?")
    assert free("Можно оплатить картой?")
    assert free("Вы принимаете детей?")
    assert not free("Сколько стоит стрижка?")  # the catalog answers it
    assert not free("Где вы находитесь?")  # the address intent
    assert not free("Да")
    assert not free("Анна")
    assert not free("ну не знаю")


async def test_question_answered_from_facts_then_the_question_again(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    gpt = _gpt(emulator)
    emulator.gpt.script(["Да, бесплатная парковка во дворе салона."])
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    run = await run_dialogue(SPEC, store, llm=gpt, booking_overrides=FACTS)
    await gpt.aclose()
    said = " ".join(" ".join(run.bot_lines).split())
    assert "Да, бесплатная парковка во дворе салона." in said
    assert said.index("парковка во дворе") < said.rindex(ASK_NAME)  # answer, then question
    (req,) = [r for r in emulator.gpt.requests if r.stream]
    system, user = req.body["messages"]
    assert "Парковка: бесплатная, во дворе салона." in system["text"]
    assert "Москва, улица Пушкина" in system["text"] and "Стрижка — 1500 руб." in system["text"]
    assert user["text"] == "А парковка у вас есть?"
    assert run.summary["handoff"] == [] and run.summary["slots"]["name"] == "Анна"
    assert not [a for a in run.actions if a.kind == "question_for_admin"]


async def test_use_llm_never_passes_the_question_to_the_admin(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/s.sqlite3"
    run = await run_dialogue(SPEC, store, use_llm="never", booking_overrides=FACTS)
    said = " ".join(" ".join(run.bot_lines).split())
    assert HANDOFF in said and said.index(HANDOFF) < said.rindex(ASK_NAME)
    (note,) = run.summary["handoff"]
    assert note["question"] == "А парковка у вас есть?" and note["reason"] == "use_llm_never"
    (action,) = [a for a in run.actions if a.kind == "question_for_admin"]
    assert action.data["question"] == "А парковка у вас есть?"
    record = await _record(store)
    assert record is not None and record.extracted["handoff"] == [note]
    assert run.summary["slots"]["name"] == "Анна"  # the booking goes on


async def test_model_failure_or_no_facts_hands_off(emulator: Emulator, tmp_path: Path) -> None:  # noqa: F811
    gpt = _gpt(emulator)
    emulator.gpt.inject("500", "500", "500")
    run = await run_dialogue(
        SPEC, f"sqlite:///{tmp_path}/a.sqlite3", llm=gpt, booking_overrides=FACTS
    )
    assert HANDOFF in " ".join(" ".join(run.bot_lines).split())
    assert [n["reason"] for n in run.summary["handoff"]] == ["INTERNAL"]

    emulator.gpt.script([f"{UNKNOWN}"])
    run = await run_dialogue(
        SPEC, f"sqlite:///{tmp_path}/b.sqlite3", llm=gpt, booking_overrides=FACTS
    )
    await gpt.aclose()
    said = " ".join(" ".join(run.bot_lines).split())
    assert HANDOFF in said and "НЕТ ДАННЫХ" not in said
    assert [n["reason"] for n in run.summary["handoff"]] == ["unknown"]


def test_not_questions() -> None:
    from booking.faq import looks_like_question

    assert looks_like_question("А парковка у вас есть")
    assert looks_like_question("Есть ли у вас парковка")
    assert not looks_like_question("Ну где-то 45")
    assert not looks_like_question("Как-то так")
    assert not looks_like_question("Не знаю, 99")
