"""YandexGPT against the emulator's completion endpoint over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.emulator_fixtures import emulator, start_emulator  # noqa: F401  (fixture)
from voicebot.config import GptSettings
from voicebot.emulator import Emulator
from voicebot.providers.base import (
    AuthError,
    ChatMessage,
    GenerationOptions,
    ProviderError,
    RateLimitError,
)
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.gpt import YandexGPT

FOLDER = "b1gtestfolder"
MESSAGES = [
    ChatMessage("system", "Ты администратор салона."),
    ChatMessage("user", "Хочу записаться на стрижку"),
]


@pytest_asyncio.fixture
async def gpt(emulator: Emulator) -> AsyncIterator[YandexGPT]:  # noqa: F811
    client = YandexGPT(
        emulator.http_url,
        ApiKeyAuth(emulator.api_key),
        folder_id=FOLDER,
        settings=GptSettings(max_retries=2),
        backoff_s=0.01,
    )
    yield client
    await client.aclose()


def outcomes(emu: Emulator) -> list[str]:
    return [r.outcome for r in emu.gpt.requests]


async def test_complete_echo_and_request_shape(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    result = await gpt.complete(MESSAGES, GenerationOptions(temperature=0.1, max_tokens=77))
    assert result.text == "Эхо: Хочу записаться на стрижку"
    assert result.status == "ALTERNATIVE_STATUS_FINAL"
    assert result.completion_tokens == 5 and result.input_tokens > 0
    (seen,) = emulator.gpt.requests
    assert seen.body["modelUri"] == f"gpt://{FOLDER}/yandexgpt-lite/latest"
    assert seen.body["completionOptions"] == {
        "stream": False,
        "temperature": 0.1,
        "maxTokens": "77",
    }
    assert seen.body["messages"][0] == {"role": "system", "text": "Ты администратор салона."}
    assert seen.folder_id == FOLDER and seen.client_request_id
    with pytest.raises(ValueError, match="folder"):
        YandexGPT(emulator.http_url, ApiKeyAuth("k"), folder_id="")


async def test_stream_yields_incremental_deltas(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    reply = "Конечно! На какой день и время вас записать? Есть свободные окна завтра утром."
    emulator.gpt.script([reply])
    deltas = [d async for d in gpt.stream(MESSAGES)]
    assert "".join(deltas) == reply
    # Word by word, as the cumulative frames arrived, not one final blob.
    assert len(deltas) == len(reply.split())
    assert all(len(d.split()) == 1 for d in deltas)
    assert emulator.gpt.requests[-1].stream is True


async def test_scripted_replies_are_fifo(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.script(["первый", "второй"])
    assert (await gpt.complete(MESSAGES)).text == "первый"
    assert "".join([d async for d in gpt.stream(MESSAGES)]) == "второй"
    assert (await gpt.complete(MESSAGES)).text.startswith("Эхо: ")


async def test_json_schema_request(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    schema = {"type": "object", "properties": {"service": {"type": "string"}}}
    result = await gpt.complete(MESSAGES, GenerationOptions(json_schema=schema))
    assert json.loads(result.text) == {}
    assert emulator.gpt.requests[-1].body["jsonSchema"] == {"schema": schema}
    emulator.gpt.script(['{"service": "haircut"}'])
    result = await gpt.complete(MESSAGES, GenerationOptions(json_schema=schema))
    assert json.loads(result.text) == {"service": "haircut"}


async def test_max_tokens_truncates(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.script(["раз два три четыре пять"])
    result = await gpt.complete(MESSAGES, GenerationOptions(max_tokens=2))
    assert result.status == "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
    assert result.text.split() == ["раз", "два"]


async def test_429_then_success_is_retried(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.inject("429")
    assert (await gpt.complete(MESSAGES)).text.startswith("Эхо")
    emulator.gpt.inject("429")
    assert "".join([d async for d in gpt.stream(MESSAGES)]).startswith("Эхо")
    assert outcomes(emulator) == ["429", "OK", "429", "OK"]


async def test_500_retried_until_max_retries(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.inject("500", "500")
    assert (await gpt.complete(MESSAGES)).text.startswith("Эхо")
    assert outcomes(emulator) == ["500", "500", "OK"]
    emulator.gpt.reset()
    emulator.gpt.inject("500", "500", "500")
    with pytest.raises(ProviderError) as err:
        await gpt.complete(MESSAGES)
    assert err.value.retriable and err.value.code == "INTERNAL"
    assert outcomes(emulator) == ["500", "500", "500"]


async def test_rate_limit_error_type_after_retries(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.inject("429", "429", "429")
    with pytest.raises(RateLimitError) as err:
        await gpt.complete(MESSAGES)
    assert err.value.retriable and err.value.code == "RESOURCE_EXHAUSTED"
    assert len(emulator.gpt.requests) == 3


async def test_400_not_retried(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    with pytest.raises(ProviderError) as err:
        await gpt.complete(MESSAGES, GenerationOptions(extra={"modelUri": "yandexgpt-lite"}))
    assert err.value.code == "INVALID_ARGUMENT" and not err.value.retriable
    assert "modelUri" in str(err.value)
    with pytest.raises(ProviderError) as err:
        await gpt.complete([])
    assert err.value.code == "INVALID_ARGUMENT"
    assert outcomes(emulator) == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]


async def test_hang_times_out(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.inject("hang", "hang")
    with pytest.raises(ProviderError) as err:
        await gpt.complete(MESSAGES, GenerationOptions(timeout_s=0.3))
    assert err.value.code == "TIMEOUT" and not err.value.retriable
    with pytest.raises(ProviderError) as err:
        async for _ in gpt.stream(MESSAGES, GenerationOptions(timeout_s=0.3)):
            pass
    assert err.value.code == "TIMEOUT"
    # The emulator is fine afterwards.
    assert (await gpt.complete(MESSAGES)).text.startswith("Эхо")


async def test_slow_stream_times_out_mid_way() -> None:
    async with start_emulator(gpt_ttft_ms=0, gpt_tokens_per_s=10) as emu:
        gpt = YandexGPT(emu.http_url, ApiKeyAuth(emu.api_key), folder_id=FOLDER)
        emu.gpt.script([" ".join(["слово"] * 30)])  # ~3 s at 10 tokens/s
        got: list[str] = []
        with pytest.raises(ProviderError) as err:
            async for delta in gpt.stream(MESSAGES, GenerationOptions(timeout_s=0.5)):
                got.append(delta)
        await gpt.aclose()
    assert err.value.code == "TIMEOUT"
    assert 0 < len(got) < 30, "some text arrived before the deadline, not all of it"


async def test_malformed_stream_and_body(emulator: Emulator, gpt: YandexGPT) -> None:  # noqa: F811
    emulator.gpt.script(["раз два три"])
    emulator.gpt.inject("malformed")
    with pytest.raises(ProviderError) as err:
        async for _ in gpt.stream(MESSAGES):
            pass
    assert err.value.code == "MALFORMED"
    emulator.gpt.inject("malformed")
    with pytest.raises(ProviderError) as err:
        await gpt.complete(MESSAGES)
    assert err.value.code == "MALFORMED"


async def test_bad_auth_is_auth_error_after_one_retry(emulator: Emulator) -> None:  # noqa: F811
    gpt = YandexGPT(emulator.http_url, ApiKeyAuth("not-the-key"), folder_id=FOLDER)
    try:
        with pytest.raises(AuthError):
            await gpt.complete(MESSAGES)
        with pytest.raises(AuthError):
            async for _ in gpt.stream(MESSAGES):
                pass
    finally:
        await gpt.aclose()
    assert outcomes(emulator) == ["UNAUTHENTICATED"] * 4


async def test_emulator_error_body_and_admin_routes(emulator: Emulator) -> None:  # noqa: F811
    url = emulator.http_url
    async with httpx.AsyncClient() as http:
        r = await http.post(url + "/foundationModels/v1/completion", json={"messages": []})
        assert r.status_code == 401
        err = r.json()["error"]
        assert (err["grpcCode"], err["httpCode"], err["httpStatus"]) == (16, 401, "Unauthorized")
        r = await http.post(url + "/emulator/gpt/script", json={"replies": ["из админки"]})
        assert r.status_code == 200
        r = await http.post(url + "/emulator/gpt/faults", json={"faults": ["429"]})
        assert r.status_code == 200
        assert (
            await http.post(url + "/emulator/gpt/faults", json={"faults": ["x"]})
        ).status_code == 400
        body = {
            "model_uri": f"gpt://{FOLDER}/yandexgpt/rc",  # snake_case is accepted too
            "completion_options": {"max_tokens": 50},
            "messages": [{"role": "user", "text": "привет"}],
        }
        headers = {"Authorization": f"Api-Key {emulator.api_key}"}
        r = await http.post(url + "/foundationModels/v1/completion", json=body, headers=headers)
        assert r.status_code == 429 and r.json()["error"]["grpcCode"] == 8
        r = await http.post(url + "/foundationModels/v1/completion", json=body, headers=headers)
        result = r.json()["result"]
        assert result["alternatives"][0]["message"] == {"role": "assistant", "text": "из админки"}
        assert result["usage"]["completionTokens"] == "2"
        assert (await http.get(url + "/emulator/healthz")).json()["ok"] is True
