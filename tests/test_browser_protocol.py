"""The `/ws` browser protocol (docs/websocket-protocol.md) through aiohttp's test client.

The codec is tested against a scripted fake session (tests/browser_fixtures.py) so each
protocol rule is checked on its own; tests/test_browser_e2e.py runs the real engine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.browser_fixtures import GREETING, Received, browser_host, of_type, read_until, tone
from tests.fake_host import FakeHost
from voicebot.config import Config
from voicebot.dialogue import (
    CallContext,
    Dialogue,
    EchoDialogue,
    EchoProvider,
    Notice,
    ReplyPart,
    TranscriptLine,
)
from voicebot.server import STATIC_DIR, create_app


@asynccontextmanager
async def serving(runtime: FakeHost) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(runtime)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def start_call(
    client: TestClient, rate: int = 16000
) -> tuple[aiohttp.ClientWebSocketResponse, Received, dict]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "start", "sample_rate": rate})
    got = Received()
    ready = await read_until(ws, got, of_type("ready"))
    assert ready is not None, got
    # The greeting: its final text and its audio.
    await read_until(ws, got, of_type("turn"))
    return ws, got, ready


def expect_error(code: str):
    return of_type("error", code=code)


async def test_happy_path_by_text() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client)
        assert ready["offline"] is True
        assert ready["session_id"] == "s1"
        caps = ready["capabilities"]
        assert caps["audio_out"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}
        assert caps["text"] is True
        # ready precedes everything the session says
        assert got.events[0]["type"] == "ready"
        greeting = [e for e in got.of("bot_text") if e["final"]]
        assert greeting[0]["text"] == GREETING
        assert sum(len(a) for a in got.audio) == 16000 * 2 * 300 // 1000
        assert runtime.opened[0]["channel"] == "browser"

        n_audio = len(got.audio)
        await ws.send_json({"type": "text", "text": "  Хочу на стрижку  "})
        await read_until(ws, got, of_type("turn", turn_id="t2"))
        transcript = got.of("transcript")[-1]
        assert transcript["segment"]["text"] == "Хочу на стрижку"
        assert transcript["segment"]["partial"] is False
        reply = [e for e in got.of("bot_text") if e["turn_id"] == "t2"]
        assert "".join(e["text"] for e in reply if not e["final"]) == "Вы сказали: Хочу на стрижку"
        assert reply[-1]["final"] is True
        assert len(got.audio) > n_audio
        # session events keep their monotonic seq
        seqs = [e["seq"] for e in got.events if "seq" in e]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        await ws.send_json({"type": "stop"})
        done = await read_until(ws, got, of_type("done"))
        assert done is not None and done["summary"]["reason"] == "caller_hangup"
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1000
        assert runtime.by_id("s1").ended == "caller_hangup"


async def test_audio_frames_reach_the_session_and_rate_is_the_clients() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client, rate=8000)
        assert ready["capabilities"]["audio_in"]["sample_rate"] == 8000
        session = runtime.by_id(ready["session_id"])
        assert session.transport.sample_rate == 8000
        # the greeting audio was produced at 8 kHz and sent as Int16 frames
        assert sum(len(a) for a in got.audio) == 8000 * 2 * 300 // 1000
        assert all(len(a) % 2 == 0 for a in got.audio)

        frame = tone(8000, 40)
        for _ in range(25):  # 1 s of caller audio in 40 ms frames
            await ws.send_bytes(frame)
        await ws.send_json({"type": "text", "text": "audio?"})
        reply = await read_until(ws, got, of_type("bot_text", final=True, turn_id="t2"))
        assert reply is not None
        assert reply["text"] == f"audio bytes: {25 * len(frame)}"
        await ws.close()


async def test_playback_acks_drive_playout() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, _got, ready = await start_call(client)
        playout = runtime.by_id(ready["session_id"]).transport.playout
        assert playout.queued_ms() == pytest.approx(300)
        assert playout.is_playing()
        await ws.send_json({"type": "playback", "played_ms": 120})
        await ws.send_json({"type": "text", "text": "sync"})  # processed after the ack
        await read_until(ws, Received(), of_type("transcript"))
        assert playout.played_ms() == pytest.approx(120)
        assert playout.is_playing()
        await ws.send_json({"type": "playback", "played_ms": 10_000})  # capped at queued
        await ws.send_json({"type": "stop"})
        await read_until(ws, Received(), of_type("done"))
        assert playout.played_ms() <= playout.queued_ms()
        assert playout.played_ms() >= 300


async def test_clear_is_sent_and_playout_cut() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client)
        transport = runtime.by_id(ready["session_id"]).transport
        await ws.send_json({"type": "playback", "played_ms": 100})
        await ws.send_json({"type": "text", "text": "sync"})
        await read_until(ws, got, of_type("transcript"))
        await transport.clear()
        assert await read_until(ws, got, of_type("clear")) is not None
        assert transport.playout.queued_ms() == pytest.approx(100)
        assert not transport.playout.is_playing()
        await ws.close()


async def test_booking_and_bot_hangup_close_cleanly() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, _ready = await start_call(client)
        await ws.send_json({"type": "text", "text": "book"})
        booking = await read_until(ws, got, of_type("booking"))
        assert booking is not None and booking["booking"]["id"] == 7
        await ws.send_json({"type": "text", "text": "bye"})
        done = await read_until(ws, got, of_type("done"))
        assert done is not None and done["summary"]["reason"] == "bot_hangup"
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1000
        # done is the last event
        assert got.events[-1]["type"] == "done"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "bad_json"),
        ("[" * 5000 + "]" * 5000, "bad_json"),  # nesting that makes the parser recurse out
        ("[1, 2]", "bad_message"),
        ('{"no_type": 1}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "text", "text": ""}', "bad_message"),
        ('{"type": "text", "text": 5}', "bad_message"),
        ('{"type": "playback", "played_ms": -1}', "bad_message"),
        ('{"type": "playback", "played_ms": "10"}', "bad_message"),
        ('{"type": "dtmf", "digit": "x"}', "bad_message"),
        ('{"type": "start", "sample_rate": 16000}', "already_started"),
    ],
)
async def test_bad_json_messages_get_an_error_and_the_call_goes_on(payload: str, code: str) -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, _ready = await start_call(client)
        await ws.send_str(payload)
        error = await read_until(ws, got, of_type("error"))
        assert error is not None and error["code"] == code, error
        assert error["message"]
        # still alive: a typed phrase is answered
        await ws.send_json({"type": "text", "text": "ещё здесь?"})
        reply = await read_until(ws, got, of_type("bot_text", final=True, turn_id="t2"))
        assert reply is not None and reply["text"] == "Вы сказали: ещё здесь?"
        assert len(runtime.sessions) == 1  # the second start made no second session
        await ws.close()


async def test_odd_length_audio_is_refused() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client)
        await ws.send_bytes(b"\x01\x02\x03")
        assert await read_until(ws, got, expect_error("bad_audio")) is not None
        assert runtime.by_id(ready["session_id"]).audio == b""
        await ws.close()


@pytest.mark.parametrize(
    "before",
    [
        b"\x00\x00" * 320,
        '{"type": "text", "text": "hi"}',
        '{"type": "playback", "played_ms": 5}',
        '{"type": "dtmf", "digit": "1"}',
    ],
)
async def test_input_before_start_is_refused(before: bytes | str) -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        if isinstance(before, bytes):
            await ws.send_bytes(before)
        else:
            await ws.send_str(before)
        got = Received()
        error = await read_until(ws, got, of_type("error"))
        assert error is not None and error["code"] == "not_started"
        assert runtime.sessions == []
        # a proper start still works on the same connection
        await ws.send_json({"type": "start", "sample_rate": 16000})
        assert await read_until(ws, got, of_type("ready")) is not None
        await ws.close()


@pytest.mark.parametrize("rate", [44100, 0, "16000", None, True, 16000.5])
async def test_wrong_sample_rate(rate: object) -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": rate})
        got = Received()
        error = await read_until(ws, got, of_type("error"))
        assert error is not None and error["code"] == "unsupported_sample_rate"
        assert "8000" in error["message"]
        assert runtime.sessions == []
        await ws.send_json({"type": "start", "sample_rate": 48000, "language": "ru-RU"})
        ready = await read_until(ws, got, of_type("ready"))
        assert ready is not None and ready["capabilities"]["audio_out"]["sample_rate"] == 48000
        await ws.close()


async def test_oversized_messages() -> None:
    cfg = Config()
    cfg.server.max_message_bytes = 4096
    runtime = browser_host(cfg)
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client)
        session = runtime.by_id(ready["session_id"])
        # over the limit: refused with an error, the call goes on
        await ws.send_bytes(b"\x00" * 4098)
        assert await read_until(ws, got, expect_error("message_too_large")) is not None
        await ws.send_str(json.dumps({"type": "text", "text": "x" * 5000}))
        assert await read_until(ws, got, expect_error("message_too_large")) is not None
        assert session.audio == b"" and session.texts == []
        await ws.send_bytes(b"\x00" * 4096)  # exactly at the limit: accepted
        await ws.send_json({"type": "text", "text": "audio?"})
        reply = await read_until(ws, got, of_type("bot_text", final=True, turn_id="t2"))
        assert reply is not None and reply["text"] == "audio bytes: 4096"

        # far over the limit: the WebSocket layer closes with 1009, the session ends
        await ws.send_bytes(b"\x00" * (2 << 20))
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1009
        for _ in range(100):
            if session.ended:
                break
            await asyncio.sleep(0.02)
        assert session.ended == "caller_hangup"


async def test_too_many_errors_close_with_1008() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        for _ in range(60):
            await ws.send_str("garbage")
        got = Received()
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1008
        assert got.of("error")[-1]["code"] == "too_many_errors"


async def test_session_limit_refuses_with_1013_and_spares_the_others() -> None:
    cfg = Config()
    cfg.server.max_sessions = 2
    runtime = browser_host(cfg)
    async with serving(runtime) as client:
        ws1, got1, _ = await start_call(client)
        ws2, got2, _ = await start_call(client)
        health = await (await client.get("/healthz")).json()
        assert health.pop("pid") > 0  # which worker answered
        assert health == {"ok": True, "offline": True, "sessions": 2}

        ws3 = await client.ws_connect("/ws")
        got3 = Received()
        error = await read_until(ws3, got3, of_type("error"))
        assert error is not None and error["code"] == "server_busy"
        await read_until(ws3, got3, lambda e: False)
        assert ws3.close_code == 1013

        # the two calls in progress are untouched
        for ws, got in ((ws1, got1), (ws2, got2)):
            await ws.send_json({"type": "text", "text": "живы?"})
            assert await read_until(ws, got, of_type("bot_text", final=True, turn_id="t2"))

        # a slot frees when a call ends
        await ws1.send_json({"type": "stop"})
        await read_until(ws1, got1, lambda e: False)
        ws4, _got4, ready4 = await start_call(client)
        assert ready4["session_id"] == "s3"
        await ws2.close()
        await ws4.close()


async def test_session_time_limit_closes_with_4001() -> None:
    cfg = Config()
    cfg.server.max_session_s = 0.5
    runtime = browser_host(cfg)
    async with serving(runtime) as client:
        ws, got, ready = await start_call(client)
        session = runtime.by_id(ready["session_id"])
        error = await read_until(ws, got, expect_error("session_time_limit"))
        assert error is not None
        done = await read_until(ws, got, of_type("done"))
        assert done is not None and done["summary"]["reason"] == "time_limit"
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 4001
        assert session.ended == "time_limit"


async def test_a_crashing_session_closes_1011_without_details_and_others_survive() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        good_ws, good, _ = await start_call(client)
        runtime.crash = True
        bad_ws, bad, _ = await start_call(client)
        await bad_ws.send_json({"type": "text", "text": "hello"})
        error = await read_until(bad_ws, bad, of_type("error"))
        assert error is not None and error["code"] == "internal_error"
        await read_until(bad_ws, bad, lambda e: False)
        assert bad_ws.close_code == 1011
        assert bad.events[-1]["type"] == "done"
        assert not any("boom" in raw for raw in bad.raw_text)

        await good_ws.send_json({"type": "text", "text": "ок"})
        reply = await read_until(good_ws, good, of_type("bot_text", final=True, turn_id="t2"))
        assert reply is not None and reply["text"] == "Вы сказали: ок"
        await good_ws.close()


async def test_page_leaving_ends_the_session() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, _got, ready = await start_call(client)
        session = runtime.by_id(ready["session_id"])
        await ws.close()
        for _ in range(100):
            if session.ended and "s1" not in runtime.live:
                break
            await asyncio.sleep(0.02)
        assert session.ended == "caller_hangup"
        assert "s1" not in runtime.live  # the host's release_call was called
        health = await (await client.get("/healthz")).json()
        assert health["sessions"] == 0


async def test_dtmf_and_language() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000, "language": "en-US"})
        got = Received()
        ready = await read_until(ws, got, of_type("ready"))
        assert ready is not None
        assert runtime.opened[0]["metadata"] == {"language": "en-US"}
        await ws.send_json({"type": "dtmf", "digit": "5"})
        await ws.send_json({"type": "text", "text": "sync"})
        await read_until(ws, got, of_type("transcript"))
        assert runtime.by_id(ready["session_id"]).dtmf == ["5"]
        await ws.close()


@pytest.mark.parametrize("hooks", [True, False])
async def test_emulator_utterances_in_start_only_with_emulator_hooks(hooks: bool) -> None:
    runtime = browser_host(emulator_hooks=hooks)
    script = ["Здравствуйте, хочу записаться на стрижку", "Завтра"]
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000, "emulator_utterances": script})
        got = Received()
        assert await read_until(ws, got, of_type("ready")) is not None
        md = dict(runtime.opened[0]["stt_metadata"])
        if hooks:
            assert json.loads(md["x-emulator-utterances-bin"]) == script
            # the script id is the call's own: two calls never share a position
            assert md["x-emulator-script-id"] == f"browser-{runtime.opened[0]['session_id']}"
        else:
            assert md == {}  # ignored like any unknown field: production never passes it on
        assert not got.of("error")
        await ws.close()


async def test_emulator_utterances_must_be_strings() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000, "emulator_utterances": [1]})
        got = Received()
        assert await read_until(ws, got, expect_error("bad_message")) is not None
        assert runtime.opened == []  # no call was started
        await ws.close()


async def test_page_and_assets_are_served() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        page = await client.get("/")
        assert page.status == 200
        html = await page.text()
        assert 'id="mic"' in html and 'name="text"' in html
        assert "Content-Security-Policy" in page.headers
        for asset in ("app.js", "capture-worklet.js", "playback-worklet.js", "styles.css"):
            resp = await client.get(f"/static/{asset}")
            assert resp.status == 200, asset
            assert f"/static/{asset}" in html or asset.endswith("worklet.js")
        info = await (await client.get("/api/info")).json()
        assert info["offline"] is True
        assert info["salon"]["name"] == ""  # the default config has no booking section
        assert (await client.get("/static/../config.yaml")).status in (403, 404)


async def test_no_secret_ever_reaches_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "api": "AQVN-fake-api-key-7c1e0b9d",
        "vox": "vox-shared-secret-51a2",
        "emu": "emu-key-9f9f9f",
    }
    monkeypatch.setenv("YANDEX_API_KEY", secrets["api"])
    monkeypatch.setenv("VOICEBOT_VOXIMPLANT_SECRET", secrets["vox"])
    from voicebot.config import load_config

    cfg = load_config()
    cfg.emulator.api_key = secrets["emu"]
    assert cfg.yandex.api_key == secrets["api"]
    runtime = browser_host(cfg, offline=False)
    seen: list[str] = []
    async with serving(runtime) as client:
        for path in ("/", "/api/info", "/healthz"):
            seen.append(await (await client.get(path)).text())
        for asset in sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file()):
            seen.append(await (await client.get(f"/static/{asset}")).text())
        ws, got, _ = await start_call(client)
        await ws.send_json({"type": "text", "text": "book"})
        await read_until(ws, got, of_type("booking"))
        await ws.send_str("{broken")
        await read_until(ws, got, of_type("error"))
        await ws.send_json({"type": "stop"})
        await read_until(ws, got, lambda e: False)
        seen.extend(got.raw_text)
        seen.extend(a.decode("latin-1") for a in got.audio)
    blob = "\n".join(seen)
    assert got.of("done")  # the whole call happened
    for value in secrets.values():
        assert value not in blob
    assert "api_key" not in blob


def test_static_page_meets_the_spec() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    js = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    assert 'data-state="idle"' in html
    for state in ("idle", "connecting", "recording", "error"):
        assert f'"{state}"' in js
    assert "Yandex Cloud" in html  # the offline banner says why
    assert "playback" in js and "played_ms" in js
    assert Path(STATIC_DIR / "capture-worklet.js").read_text().count("registerProcessor") == 1


# --- the same protocol through the real engine (offline: the in-process emulator) --------

ECHO = "voicebot.dialogue:build_echo"  # deterministic replies: the engine is under test here


@asynccontextmanager
async def real_runtime(factory: str = ECHO, **env: str) -> AsyncIterator[object]:
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(env=env)  # no credentials from the developer's shell
    cfg.dialogue.factory = factory
    cfg.yandex.api_key = ""
    cfg.yandex.sa_key_file = ""
    runtime = await Runtime.create(cfg)
    try:
        yield runtime
    finally:
        await runtime.aclose()


@asynccontextmanager
async def serving_real(runtime: object, script: list[str] | None = None):
    """The real app; `script` is what the emulator 'hears' in each call's audio."""
    factory = None
    if script is not None:

        def factory(transport, start):  # type: ignore[no-untyped-def]
            return runtime.open_call(  # type: ignore[attr-defined]
                transport, channel="browser", script=script, script_id=f"browser-{id(transport)}"
            )

    client = TestClient(TestServer(create_app(runtime, session_factory=factory)))  # type: ignore[arg-type]
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def audio_ms(got: Received, rate: int) -> float:
    return sum(len(a) for a in got.audio) / 2 / rate * 1000


async def test_real_engine_by_text() -> None:
    async with real_runtime() as runtime, serving_real(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        got = Received()
        ready = await read_until(ws, got, of_type("ready"))
        assert ready is not None and ready["offline"] is True
        await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)  # greeting
        greeting_ms = audio_ms(got, 16000)
        assert greeting_ms > 300  # real synthesized speech, at the rate we asked for
        await ws.send_json({"type": "playback", "played_ms": greeting_ms})

        await ws.send_json({"type": "text", "text": "Хочу записаться на стрижку"})
        turn = await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
        assert turn is not None and turn["latency_ms"]["total"] >= 0
        finals = [e for e in got.of("transcript") if not e["segment"]["partial"]]
        assert finals[-1]["segment"]["text"] == "Хочу записаться на стрижку"
        # The final bot_text is what was heard: it comes once the page reports the
        # reply played.
        await ws.send_json({"type": "playback", "played_ms": audio_ms(got, 16000)})
        await read_until(ws, got, of_type("bot_text", turn_id="t2", final=True), within=10)
        reply = [e for e in got.of("bot_text") if e["turn_id"] == "t2" and e["final"]]
        assert "Хочу записаться на стрижку" in reply[0]["text"]
        assert audio_ms(got, 16000) > greeting_ms

        await ws.send_json({"type": "stop"})
        done = await read_until(ws, got, of_type("done"))
        assert done is not None and done["summary"]["reason"] == "caller_hangup"
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1000
        seqs = [e["seq"] for e in got.events if "seq" in e]
        assert seqs == sorted(seqs)


NOTICE = "Разговор записывается для оформления записи."


class NoticeEcho(EchoDialogue):
    """The echo dialogue with the privacy notice first; its summary holds the transcript."""

    async def greet(self) -> AsyncIterator[ReplyPart]:
        yield Notice(NOTICE)
        async for part in super().greet():
            yield part

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        return {"transcript": [[x.role, x.text] for x in transcript]}


class NoticeEchoProvider(EchoProvider):
    def new_dialogue(self, ctx: CallContext) -> Dialogue:
        return NoticeEcho(ctx)


def build_notice_echo(domain: Mapping[str, Any], options: Mapping[str, Any]) -> NoticeEchoProvider:
    return NoticeEchoProvider()


async def test_text_typed_right_after_start_waits_for_the_privacy_notice() -> None:
    """The page sends `start` and a typed line at once: the notice still plays in full
    (issue 15, 152-FZ) and the line is answered after it."""
    factory = "tests.test_browser_protocol:build_notice_echo"
    async with real_runtime(factory) as runtime, serving_real(runtime) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        await ws.send_json({"type": "text", "text": "Хочу на стрижку"})
        got = Received()
        # Nothing played yet (no acks): the greeting is queued whole, the line waits.
        await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)
        assert not [e for e in got.of("bot_text") if e["turn_id"] != "t1"]
        await ws.send_json({"type": "playback", "played_ms": audio_ms(got, 16000)})
        await read_until(ws, got, of_type("bot_text", turn_id="t1", final=True), within=10)
        notice = next(e for e in got.of("bot_text") if e["turn_id"] == "t1" and e["final"])
        assert notice["text"].startswith(NOTICE) and not notice.get("interrupted")
        await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
        await ws.send_json({"type": "playback", "played_ms": audio_ms(got, 16000)})
        await read_until(ws, got, of_type("bot_text", turn_id="t2", final=True), within=10)
        reply = [e for e in got.of("bot_text") if e["turn_id"] == "t2" and e["final"]]
        assert reply[0]["text"] == "Вы сказали: Хочу на стрижку."
        await ws.send_json({"type": "stop"})
        done = await read_until(ws, got, of_type("done"))
        assert done is not None
        transcript = done["summary"]["dialogue"]["transcript"]
        assert transcript[0][0] == "bot" and transcript[0][1].startswith(NOTICE)
        assert transcript[1] == ["caller", "Хочу на стрижку"]


async def espeak_pcm(text: str, rate: int) -> bytes:
    from voicebot.emulator.espeak import EspeakSynthesizer

    if not EspeakSynthesizer.available():
        pytest.skip("espeak-ng is not installed")
    return await EspeakSynthesizer().synthesize(text, sample_rate=rate)


@pytest.mark.parametrize("rate", [16000, 8000])
async def test_real_engine_by_audio(rate: int) -> None:
    said = "Хочу подстричься завтра в пятнадцать часов"
    speech = await espeak_pcm(said, rate)
    frame = rate * 2 * 40 // 1000  # 40 ms frames
    silence = b"\x00" * frame
    async with real_runtime() as runtime, serving_real(runtime, script=[said]) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": rate})
        got = Received()
        await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)
        # The page reports the greeting as played, so the echo gate opens.
        await ws.send_json({"type": "playback", "played_ms": audio_ms(got, rate)})

        async def talk() -> None:
            stream = silence * 20 + speech + silence * 50  # 0.8 s, speech, 2 s
            for i in range(0, len(stream), frame):
                await ws.send_bytes(stream[i : i + frame])
                await asyncio.sleep(0.01)  # 4x real time: paced, but fast

        talker = asyncio.create_task(talk())
        final = await read_until(
            ws,
            got,
            lambda e: e.get("type") == "transcript" and not e["segment"]["partial"],
            within=30,
        )
        assert final is not None and final["segment"]["text"] == said
        revisions = [e["segment"]["revision"] for e in got.of("transcript")]
        assert revisions == sorted(revisions)
        before = len(got.audio)
        await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
        assert len(got.audio) > before  # the reply was spoken, at the client's rate
        # Its final text comes once the page reports it played (what was heard).
        await ws.send_json({"type": "playback", "played_ms": audio_ms(got, rate)})
        reply = await read_until(ws, got, of_type("bot_text", turn_id="t2", final=True), within=20)
        assert reply is not None and said in reply["text"]
        assert all(len(a) % 2 == 0 for a in got.audio)
        await talker
        await ws.send_json({"type": "stop"})
        assert await read_until(ws, got, of_type("done")) is not None


async def test_real_engine_no_secret_reaches_the_browser() -> None:
    vox = "vox-secret-0d6f2c41"
    async with (
        real_runtime(VOICEBOT_VOXIMPLANT_SECRET=vox) as runtime,
        serving_real(runtime) as client,
    ):
        emulator_key = runtime.emulator.api_key  # type: ignore[attr-defined]
        assert emulator_key and runtime.cfg.telephony.voximplant.secret == vox  # type: ignore[attr-defined]
        seen = [await (await client.get(p)).text() for p in ("/", "/api/info", "/healthz")]
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        got = Received()
        await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)
        await ws.send_json({"type": "text", "text": "Меня зовут Анна"})
        await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
        await ws.send_json({"type": "stop"})
        await read_until(ws, got, lambda e: False)
        blob = "\n".join(seen + got.raw_text)
        assert got.of("done")
        assert emulator_key not in blob and vox not in blob


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_an_ack_rounded_to_whole_ms_counts_as_fully_played() -> None:
    runtime = browser_host()
    async with serving(runtime) as client:
        ws, _got, ready = await start_call(client)
        playout = runtime.by_id(ready["session_id"]).transport.playout
        await runtime.by_id(ready["session_id"]).transport.play(b"\x00\x00" * 3)
        assert playout.queued_ms() == pytest.approx(300.1875)
        await ws.send_json({"type": "playback", "played_ms": 299})
        await eventually(lambda: playout.played_ms() == 299)
        assert playout.is_playing()  # 1.19 ms short: still playing
        await ws.send_json({"type": "playback", "played_ms": 300})
        await eventually(lambda: not playout.is_playing())
        assert playout.played_ms() == pytest.approx(300.1875)
        await ws.close()


# --- the page's audio path: the capture and playback worklets, run in Node ---------------

NODE = shutil.which("node")

WORKLET_HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const cfg = JSON.parse(process.argv[process.argv.length - 1]);
const posted = [];
globalThis.sampleRate = cfg.contextRate;
globalThis.AudioWorkletProcessor = class { constructor() { this.port = { postMessage: (m) => posted.push(m) }; } };
let Proc = null;
globalThis.registerProcessor = (name, cls) => { Proc = cls; };
vm.runInThisContext(fs.readFileSync(cfg.file, "utf8"));
const node = new Proc({ processorOptions: cfg.options });
const out = { frames: [], samples: [], reports: [] };
if (cfg.kind === "capture") {
  const n = Math.round(cfg.contextRate * cfg.seconds);
  for (let start = 0; start < n; start += 128) {
    const block = new Float32Array(128);
    for (let i = 0; i < 128; i++) block[i] = cfg.amp * Math.sin(2 * Math.PI * cfg.freq * (start + i) / cfg.contextRate);
    node.process([[block]]);
  }
  for (const m of posted) out.frames.push(Array.from(new Int16Array(m)));
} else {
  const n = Math.round(cfg.options.sourceRate * cfg.seconds);
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = Math.round(16000 * Math.sin(2 * Math.PI * cfg.freq * i / cfg.options.sourceRate));
  node.port.onmessage({ data: pcm.buffer });
  for (let b = 0; b < cfg.blocks; b++) {
    if (b === cfg.clearAt) node.port.onmessage({ data: { type: "clear" } });
    const o = new Float32Array(128);
    node.process([], [[o]]);
    out.samples.push(...o);
  }
  out.reports = posted;
}
process.stdout.write(JSON.stringify(out));
"""


def run_worklet(**cfg: object) -> dict:
    if NODE is None:
        pytest.skip("node is not installed")
    proc = subprocess.run(
        [NODE, "-e", WORKLET_HARNESS, json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("context_rate", [48000, 44100])
def test_capture_worklet_resamples_to_16k_int16_frames(context_rate: int) -> None:
    common = {
        "file": str(STATIC_DIR / "capture-worklet.js"),
        "kind": "capture",
        "contextRate": context_rate,
        "seconds": 1.0,
        "amp": 0.5,
        "options": {"targetRate": 16000, "frameMs": 40},
    }
    speech_band = run_worklet(**common, freq=1000)
    assert {len(f) for f in speech_band["frames"]} == {640}  # 40 ms at 16 kHz
    assert 24 <= len(speech_band["frames"]) <= 25  # 1 s in, 1 s out (minus filter delay)
    x = np.concatenate([np.array(f, dtype=np.float64) for f in speech_band["frames"]])[400:]
    assert dominant_hz(x, 16000) == pytest.approx(1000, abs=5)
    rms = np.sqrt(np.mean(x**2))
    assert rms == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.05)
    # Above the new Nyquist (8 kHz): filtered out, not folded back as a 4 kHz whistle.
    alias = run_worklet(**common, freq=12000)
    y = np.concatenate([np.array(f, dtype=np.float64) for f in alias["frames"]])[400:]
    assert np.sqrt(np.mean(y**2)) < 0.02 * rms


def test_playback_worklet_plays_from_the_first_chunk_and_reports_real_playout() -> None:
    common = {
        "file": str(STATIC_DIR / "playback-worklet.js"),
        "kind": "playback",
        "contextRate": 48000,
        "seconds": 0.5,
        "freq": 500,
        "options": {"sourceRate": 16000, "reportMs": 100},
    }
    out = run_worklet(**common, blocks=250, clearAt=-1)  # 250 blocks = 0.667 s of output
    samples = np.array(out["samples"])
    assert abs(samples[0]) < 1e-6 and np.max(np.abs(samples[:128])) > 0.1  # sound in block 1
    voiced = samples[:24000]
    assert dominant_hz(voiced, 48000) == pytest.approx(500, abs=5)
    assert np.max(np.abs(samples[24100:])) == 0  # then silence: nothing invented
    reports = [r for r in out["reports"] if r["type"] == "played"]
    played = [r["playedMs"] for r in reports]
    assert played == sorted(played) and len(played) >= 4  # acks every ~100 ms while playing
    assert reports[-1] == {"type": "played", "playedMs": 500, "playing": False}

    cut = run_worklet(**common, blocks=250, clearAt=75)  # clear after 200 ms (75 x 128)
    last = [r for r in cut["reports"] if r["type"] == "played"][-1]
    assert last["playing"] is False
    assert last["playedMs"] == pytest.approx(200, abs=1)  # what was really played, no more
    assert np.max(np.abs(np.array(cut["samples"])[75 * 128 :])) == 0


async def test_a_connection_that_never_starts_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle sockets must not hold session slots: `start` has a deadline."""
    from voicebot.transports import browser

    monkeypatch.setattr(browser, "START_TIMEOUT_S", 0.2)
    async with serving(browser_host()) as client:
        ws = await client.ws_connect("/ws")
        got = Received()
        error = await read_until(ws, got, of_type("error"))
        assert error is not None and error["code"] == "no_start"
        await read_until(ws, got, lambda e: False)
        assert ws.close_code == 1008
