"""The YandexGPT path: only for turns the deterministic layer did not understand, always
validated, and every failure (malformed JSON, 429, 500, timeout) falls back to the
deterministic result with the same dialogue outcome. Fake model and the real client
against the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pytest

from booking.catalog import Catalog
from booking.llm import parse_json, validate
from booking.textsim import run_dialogue
from tests.emulator_fixtures import emulator  # noqa: F401  (fixture)
from voicebot.config import GptSettings
from voicebot.emulator import Emulator
from voicebot.providers.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    ProviderError,
    RateLimitError,
)
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.gpt import YandexGPT

CATALOG = Catalog.from_config(None)
TODAY = date(2026, 11, 23)

# Turn 1 is not understood by the deterministic layer; turn 2 repeats the service so the
# dialogue ends the same way whether or not the model helped.
SPEC = {
    "name": "llm_fallback",
    "now": "2026-11-23T10:00:00+03:00",
    "caller": [
        "Мне бы голову в порядок привести",
        "Стрижку, завтра в 15:00",
        "Анна, +7 916 123-45-67",
        "Да",
    ],
}
WANT = {
    "service": "haircut",
    "master": "Иван",
    "start": "2026-11-24T15:00:00+03:00",
    "name": "Анна",
    "phone": "+79161234567",
}
GOOD_JSON = json.dumps({"service": "haircut", "intent": "none"})


class FakeLLM:
    """Scripted `LanguageModel`: each call takes the next reply or raises it."""

    name = "fake"

    def __init__(self, replies: Sequence[str | BaseException]) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[ChatMessage], GenerationOptions]] = []

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> Completion:
        self.calls.append((list(messages), options))
        reply = self.replies.pop(0) if self.replies else "{}"
        if isinstance(reply, BaseException):
            raise reply
        return Completion(text=reply)

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> AsyncIterator[str]:
        yield (await self.complete(messages, options)).text


def _reply(run: object, n: int) -> str:
    """The bot's n-th line after its greeting (a privacy notice may precede it)."""
    lines: list[str] = run.bot_lines  # type: ignore[attr-defined]
    greeting = next(i for i, line in enumerate(lines) if line.startswith("Здравствуйте"))
    return lines[greeting + n]


def _booked(run: object) -> dict:
    (b,) = run.bookings  # type: ignore[attr-defined]
    return {k: b[k] for k in WANT}


async def test_llm_fills_what_the_parser_missed(tmp_path: Path) -> None:
    llm = FakeLLM([GOOD_JSON, "ignored summary"])
    run = await run_dialogue(SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm)
    assert _booked(run) == WANT
    # Turn 1 understood thanks to the model: no "не поняла", straight to the date.
    assert "не поняла" not in _reply(run, 1)
    assert "На какой день" in _reply(run, 1)
    extraction_calls = [c for c in llm.calls if c[1].json_schema is not None]
    assert len(extraction_calls) == 1  # only the unresolved turn went to the model
    assert extraction_calls[0][1].json_schema["properties"]["service"]
    assert run.summary["llm_turns"] == 1 and run.summary["turns"] == 4
    assert run.summary["llm_share"] == 0.25
    assert run.summary["summary"] == "ignored summary"


@pytest.mark.parametrize(
    "failure",
    [
        "{not json",
        "```json\n[1, 2]\n```",
        ProviderError("boom", code="INTERNAL", retriable=True),
        RateLimitError("quota", code="RESOURCE_EXHAUSTED", retriable=True),
        TimeoutError(),
    ],
    ids=["malformed", "not-an-object", "500", "429", "timeout"],
)
async def test_failures_fall_back_with_the_same_outcome(
    tmp_path: Path, failure: str | BaseException
) -> None:
    llm = FakeLLM([failure])
    run = await run_dialogue(SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm)
    assert _booked(run) == WANT
    assert run.summary["outcome"] == "booked"
    assert "не поняла" in _reply(run, 1)
    assert run.summary["llm_failures"] == 1


async def test_never_mode_does_not_call_the_model(tmp_path: Path) -> None:
    llm = FakeLLM([GOOD_JSON])
    run = await run_dialogue(SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm, use_llm="never")
    assert _booked(run) == WANT
    assert llm.calls == [] and run.summary["llm_share"] == 0.0


async def test_always_mode_keeps_deterministic_values(tmp_path: Path) -> None:
    # The model contradicts the parser on every turn; the parser wins where it found
    # something, so the booking is what the caller said.
    wrong = json.dumps({"service": "styling", "time": "18:00", "master": "Петр", "intent": "none"})
    llm = FakeLLM([GOOD_JSON, wrong, wrong, wrong, "summary"])
    run = await run_dialogue(
        {**SPEC, "caller": ["Стрижку к Ивану завтра в 15:00", *SPEC["caller"][2:]]},
        f"sqlite:///{tmp_path}/s.sqlite3",
        llm=llm,
        use_llm="always",
    )
    assert _booked(run) == WANT
    assert run.summary["llm_share"] == 1.0


def test_validate_drops_invalid_values() -> None:
    ex = validate(
        {
            "service": "massage",
            "master": "Вася",
            "date": "2020-01-01",
            "time": "25:00",
            "phone": "12345",
            "name": "<script>",
            "answer": "maybe",
            "intent": "launch_rockets",
        },
        CATALOG,
        TODAY,
    )
    assert not ex.resolved


def test_validate_normalizes_good_values() -> None:
    ex = validate(
        {
            "service": "haircut_beard",
            "master": "Петра",
            "date": "2026-11-25",
            "time": "9:30",
            "phone": "8 (916) 123-45-67",
            "name": "анна",
            "answer": "yes",
            "intent": "price",
        },
        CATALOG,
        TODAY,
    )
    assert ex.service == "haircut_beard" and ex.master == "Петр"
    assert ex.date == date(2026, 11, 25) and ex.time is not None and ex.time.hour == 9
    assert ex.phone == "+79161234567" and ex.name == "Анна"
    assert ex.answer == "yes" and ex.intents == {"price"}


def test_parse_json_strips_fences() -> None:
    assert parse_json('```json\n{"intent": "none"}\n```') == {"intent": "none"}
    assert parse_json("nope") is None


# ---------------------------------------------------------------- real client, emulator


def _client(emu: Emulator) -> YandexGPT:
    return YandexGPT(
        emu.http_url,
        ApiKeyAuth(emu.api_key),
        folder_id="b1gtestfolder",
        settings=GptSettings(max_retries=0),
        backoff_s=0.01,
    )


async def test_emulator_scripted_json(emulator: Emulator, tmp_path: Path) -> None:  # noqa: F811
    emulator.gpt.script([GOOD_JSON, "Анна записана на стрижку."])
    gpt = _client(emulator)
    try:
        run = await run_dialogue(SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=gpt)
    finally:
        await gpt.aclose()
    assert _booked(run) == WANT
    assert "На какой день" in _reply(run, 1)
    first = emulator.gpt.requests[0].body
    assert first["jsonSchema"]["schema"]["required"] == ["intent"]
    assert run.summary["summary"] == "Анна записана на стрижку."


@pytest.mark.parametrize("fault", ["malformed", "429", "500", "hang"])
async def test_emulator_faults_fall_back(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
    fault: str,
) -> None:
    emulator.gpt.inject(fault)
    emulator.gpt.script([GOOD_JSON])  # would help if the fault did not happen
    gpt = _client(emulator)
    try:
        run = await run_dialogue(
            SPEC,
            f"sqlite:///{tmp_path}/s.sqlite3",
            llm=gpt,
            booking_overrides={"llm_timeout_s": 0.3},
        )
    finally:
        await gpt.aclose()
    assert _booked(run) == WANT
    assert "не поняла" in _reply(run, 1)
    assert run.summary["llm_failures"] == 1
    assert emulator.gpt.requests[0].outcome == fault


UNPLACED_SPEC = {
    "name": "llm_unplaced",
    "now": "2026-11-23T10:00:00+03:00",
    "caller": [
        "Стрижку завтра: работу заканчиваю в 6, и ещё 40 минут на дорогу",
        "Анна, +7 916 123-45-67",
        "Да",
    ],
}


async def test_unplaced_words_go_to_the_model_and_through_the_validators(
    tmp_path: Path,
) -> None:
    """The coverage rule with `use_llm: auto`: the parser leaves «45» unplaced, so the
    turn goes to the model even though it understood the service and the day; the
    model's time passes the same validator and fills the slot."""
    llm = FakeLLM([json.dumps({"time": "18:45", "date": "2026-11-24"}), "summary"])
    run = await run_dialogue(UNPLACED_SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm)
    (b,) = run.bookings
    assert b["start"] == "2026-11-24T18:45:00+03:00"
    assert "Не поняла время" not in _reply(run, 1)


async def test_unplaced_words_with_a_bad_model_answer_are_asked(tmp_path: Path) -> None:
    llm = FakeLLM([json.dumps({"time": "29:99"}), "{}", "{}", "summary"])
    run = await run_dialogue(UNPLACED_SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm)
    assert run.bookings == []
    assert "Не поняла время" in _reply(run, 1)


async def test_unplaced_words_never_go_to_the_model_with_use_llm_never(tmp_path: Path) -> None:
    llm = FakeLLM([json.dumps({"time": "18:30"})])
    run = await run_dialogue(
        UNPLACED_SPEC, f"sqlite:///{tmp_path}/s.sqlite3", llm=llm, use_llm="never"
    )
    assert llm.calls == [] and run.bookings == []
    assert "Не поняла время: «40»" in _reply(run, 1)
