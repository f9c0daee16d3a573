"""Back-pressure and per-connection limits through the real app and engine (offline,
on the in-process emulator): an overloaded provider turns /readyz 503 and a new call
hears only the busy message; a message flood on one /ws is closed with 1008."""

from __future__ import annotations

import aiohttp

from tests.browser_fixtures import Received, of_type, read_until
from tests.test_ops_drain import next_event
from tests.test_ops_metrics import served
from voicebot.server import RUNTIME_KEY


async def test_an_overloaded_provider_gets_new_callers_the_busy_message() -> None:
    async with served() as client:
        runtime = client.server.app[RUNTIME_KEY]  # type: ignore[union-attr]
        assert (await client.get("/readyz")).status == 200
        runtime.readiness.mark_down("tts")
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["reasons"] == ["tts marked down"]

        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        said = await next_event(ws, "bot_text", final=True)  # audio acked as played
        assert "все линии заняты" in said["text"]
        done = await next_event(ws, "done")
        assert done["summary"]["reason"] == "bot_hangup:busy"
        await ws.close()

        # Back up, it holds `recover_s` before taking calls again (unit-tested in
        # virtual time in test_ops_limits.py).
        runtime.readiness.mark_down("tts", False)
        r = await client.get("/readyz")
        assert r.status == 503 and "recovering" in (await r.json())["reasons"]


async def test_a_message_flood_on_one_connection_is_closed() -> None:
    async with served(ws_messages_per_s=20.0) as client:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        got = Received()
        await read_until(ws, got, of_type("ready"), within=20)
        for _ in range(100):  # far over 20/s with a burst of 40
            if ws.closed:
                break
            await ws.send_json({"type": "playback", "played_ms": 0})
        err = await read_until(ws, got, of_type("error", code="rate_limited"), within=20)
        assert err is not None
        await read_until(ws, got, lambda e: False, within=20)
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
