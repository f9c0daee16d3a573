"""The YandexGPT voice chat: history, streaming, budget, errors, and `voicebot simulate`
against any YandexGPT-compatible completion endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.emulator_fixtures import emulator, start_emulator  # noqa: F401  (fixture)
from voicebot.chat.dialogue import ChatDialogue, ChatProvider, build_provider
from voicebot.chat.history import ChatHistory
from voicebot.chat.settings import ChatSettings
from voicebot.chat.tokens import TokenCache, TokenCounter, estimate_tokens
from voicebot.clock import RealClock
from voicebot.config import Config, GptSettings
from voicebot.dialogue import CallContext, load_provider
from voicebot.emulator import Emulator
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.gpt import YandexGPT
from voicebot.simulate import CallerLine, DialogueScript, run_simulation

from .emulator_fixtures import fast_settings

COMPLETION = "/foundationModels/v1/completion"


async def _collect(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]


def _chat(llm: Any, **settings: Any) -> ChatDialogue:
    provider = ChatProvider(ChatSettings(**settings), GptSettings(timeout_s=1.0))
    return ChatDialogue(provider, CallContext(session_id="c1", clock=RealClock(), llm=llm))


def _gpt(emu: Emulator, **kw: Any) -> YandexGPT:
    return YandexGPT(
        emu.http_url,
        ApiKeyAuth(emu.api_key),
        folder_id="b1gtest",
        settings=GptSettings(max_retries=kw.pop("max_retries", 2), timeout_s=1.0),
        backoff_s=0.01,
    )


def test_short_names_resolve() -> None:
    assert type(load_provider("chat", {}, {})).__name__ == "ChatProvider"
    assert type(load_provider("echo", {}, {})).__name__ == "EchoProvider"
    assert type(build_provider({"chat": {"history_tokens": 100}}, {})).__name__ == "ChatProvider"
    with pytest.raises(ValueError, match=r"unknown setting chat\.bogus"):
        build_provider({"chat": {"bogus": 1}}, {})


async def test_history_holds_only_what_was_played(emulator: Emulator) -> None:  # noqa: F811
    gpt = _gpt(emulator)
    chat = _chat(gpt)
    emulator.gpt.script(["Первый ответ. Он длинный.", "Второй ответ.", "Третий."])
    assert "".join(await _collect(chat.reply("привет"))) == "Первый ответ. Он длинный."
    chat.on_played("Первый ответ. Он длинный.")
    await _collect(chat.reply("как дела"))  # generated, never reported played
    await _collect(chat.reply("ты тут"))
    bodies = [r.body for r in emulator.gpt.requests]
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user", "assistant", "user"]
    assert bodies[1]["messages"][2]["text"] == "Первый ответ. Он длинный."
    # The unheard second answer is not history; the caller's two lines are joined.
    last = bodies[2]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    assert last[-1]["text"] == "как дела ты тут"
    assert all(r.stream for r in emulator.gpt.requests)
    await gpt.aclose()


async def test_apology_after_retries_within_budget(emulator: Emulator) -> None:  # noqa: F811
    gpt = _gpt(emulator, max_retries=2)
    chat = _chat(gpt)
    emulator.gpt.inject("429", "500", "500")
    said = "".join(await _collect(chat.reply("привет")))
    assert said == ChatSettings().apology
    assert [r.outcome for r in emulator.gpt.requests] == ["429", "500", "500"]
    emulator.gpt.inject("429")  # one retry, then the answer
    emulator.gpt.script(["Ответ."])
    assert "".join(await _collect(chat.reply("ещё раз"))) == "Ответ."
    assert chat.failures == 1
    await gpt.aclose()


async def test_hung_stream_cut_at_timeout(emulator: Emulator) -> None:  # noqa: F811
    gpt = _gpt(emulator)
    chat = _chat(gpt)
    emulator.gpt.inject("hang")
    t = time.monotonic()
    said = "".join(await _collect(chat.reply("привет")))
    assert said == ChatSettings().apology
    assert 0.9 <= time.monotonic() - t < 3.0  # gpt.timeout_s = 1.0 in _chat()
    await gpt.aclose()


async def test_tokenize_endpoint_counts_and_budget_trims(emulator: Emulator) -> None:  # noqa: F811
    gpt = _gpt(emulator)
    assert await gpt.count_tokens("раз два три") == 3
    cache = TokenCache()
    counter = TokenCounter(gpt, "api", cache)
    assert counter.count("раз два три") == estimate_tokens("раз два три")
    await counter.learn("раз два три")
    assert counter.count("раз два три") == 3 + 4 and counter.exact == 1
    assert emulator.gpt.tokenize_requests == 2
    history = ChatHistory(TokenCounter(None, "estimate", TokenCache()), budget_tokens=60)
    for i in range(10):
        history.add("user", f"вопрос номер {i} " * 3)
        history.add("assistant", f"ответ номер {i} " * 3)
    history.add("user", "последний вопрос")
    window = history.window("Ты помощник.")
    assert window[0].role == "system" and window[1].role == "user"
    assert window[-1].text == "последний вопрос"
    assert sum(estimate_tokens(m.text) for m in window) <= 60
    assert history.trimmed > 0
    await gpt.aclose()


# ---------------------------------------------------------------- simulate, any endpoint


class FakeCompletionServer:
    """A YandexGPT-compatible completion endpoint of the test's own: streams cumulative
    NDJSON, the first sentence at once and the rest after a long pause."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        self.bodies: list[dict[str, Any]] = []
        self.finished: list[float] = []  # time.monotonic() of each stream's final line

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        n = len(self.bodies)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        head = f"Ответ номер {n}, первая часть. "
        for text, status in (
            (head, "ALTERNATIVE_STATUS_PARTIAL"),
            (head + "Вторая часть.", "ALTERNATIVE_STATUS_FINAL"),
        ):
            if status.endswith("FINAL"):
                await asyncio.sleep(self.pause_s)
            alt = {"message": {"role": "assistant", "text": text}, "status": status}
            line = {"result": {"alternatives": [alt], "usage": {}, "modelVersion": "x"}}
            await resp.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
        self.finished.append(time.monotonic())
        await resp.write_eof()
        return resp


async def test_simulate_chat_against_a_compatible_endpoint() -> None:
    fake = FakeCompletionServer(pause_s=1.5)
    app = web.Application()
    app.router.add_post(COMPLETION, fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with start_emulator() as emu:
        cfg = Config()
        cfg.emulator = fast_settings(client_scripts=True)  # the separate emulator hears the script
        cfg.dialogue.factory = "chat"
        y = cfg.yandex
        y.api_key, y.folder_id = emu.api_key, "b1gtest"  # "credentials in the environment"
        y.endpoints.stt, y.endpoints.tts = emu.stt_endpoint, emu.tts_endpoint
        y.endpoints.llm_url, y.endpoints.iam_url = f"http://127.0.0.1:{port}", emu.http_url
        y.endpoints.tls = False
        script = DialogueScript(
            now=None, lines=[CallerLine(say="Как дела?"), CallerLine(say="А погода?")]
        )
        result = await run_simulation(script, cfg)
    await runner.cleanup()
    assert len(fake.bodies) == 2
    first, second = (b["messages"] for b in fake.bodies)
    assert [m["role"] for m in first] == ["system", "user"]
    assert first[1]["text"] == "Как дела?"
    assert [(m["role"], m["text"]) for m in second[1:]] == [
        ("user", "Как дела?"),
        ("assistant", "Ответ номер 1, первая часть. Вторая часть."),
        ("user", "А погода?"),
    ]
    turns = [t for t in result.session.turns if t.trigger == "utterance"]
    assert len(turns) == 2
    for turn, finished in zip(turns, fake.finished, strict=True):
        assert turn.t_first_play is not None and turn.t_first_play < finished


async def test_browser_offers_modes_and_runs_the_chat_offline() -> None:
    from tests.browser_fixtures import Received, of_type, read_until
    from tests.test_browser_protocol import serving_real
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(env={})
    cfg.emulator = fast_settings()
    cfg.dialogue.factory, cfg.dialogue.modes = "echo", ["echo", "chat"]
    runtime = await Runtime.create(cfg)
    try:
        async with serving_real(runtime) as client:
            info = await (await client.get("/api/info")).json()
            assert info["modes"] == ["echo", "chat"] and info["default_mode"] == "echo"
            assert info["offline"] is True and info["llm"] == "emulator"
            ws = await client.ws_connect("/ws")
            await ws.send_json({"type": "start", "sample_rate": 16000, "mode": "nope"})
            got = Received()
            err = await read_until(ws, got, of_type("error"))
            assert err is not None and err["code"] == "unknown_mode"
            await ws.send_json({"type": "start", "sample_rate": 16000, "mode": "chat"})
            ready = await read_until(ws, got, of_type("ready"))
            assert ready is not None and ready["mode"] == "chat"
            assert ready["capabilities"]["modes"] == ["echo", "chat"]
            await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)
            await ws.send_json({"type": "text", "text": "Расскажи анекдот"})
            await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
            # The final bot_text is what was heard: it follows the page's playback ack.
            played = sum(len(a) for a in got.audio) / 32  # ms of 16 kHz LINEAR16
            await ws.send_json({"type": "playback", "played_ms": played})
            await read_until(ws, got, of_type("bot_text", turn_id="t2", final=True), within=10)
            reply = [e for e in got.of("bot_text") if e["turn_id"] == "t2" and e["final"]]
            assert reply[0]["text"] == "Эхо: Расскажи анекдот"  # the emulator's GPT echo
            await ws.send_json({"type": "stop"})
            await read_until(ws, got, of_type("done"))
    finally:
        await runtime.aclose()
