"""SIGTERM drains `voicebot serve`: /readyz 503 at once, new calls refused on every
channel, live calls finish (or hear the goodbye after `server.drain_timeout_s`), and
the process exits 0 within drain_timeout_s + 5 s.

Real processes and sockets: the server runs as a user runs it (offline, on its
in-process emulator, the echo dialogue), and the test is its browser caller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.test_ops_workers import free_port, start_serve, write_config
from voicebot.config import load_config

DRAIN_S = 4.0
GOODBYE = load_config(env={}).server.goodbye_message
pytestmark = pytest.mark.slow


async def wait_up(http: aiohttp.ClientSession, port: int) -> None:
    for _ in range(300):
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("server not ready")


PLAYED: dict[int, float] = {}  # ws id -> ms of bot audio "played" (acked at once)


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str, **match: object) -> dict:
    """The next event of `kind`; bot audio is acked as played at once, like a page."""
    async with asyncio.timeout(30):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                PLAYED[id(ws)] = PLAYED.get(id(ws), 0.0) + len(msg.data) / 32  # 16 kHz s16
                await ws.send_json({"type": "playback", "played_ms": PLAYED[id(ws)]})
            elif msg.type == aiohttp.WSMsgType.TEXT:
                ev = json.loads(msg.data)
                if ev["type"] == kind and all(ev.get(k) == v for k, v in match.items()):
                    return ev
    raise AssertionError(f"no {kind} {match}: closed {ws.close_code}")


async def start_call(http: aiohttp.ClientSession, port: int) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws")
    await ws.send_json({"type": "start", "sample_rate": 16000})
    await next_event(ws, "turn", turn_id="t1")  # the greeting has played
    return ws


async def sigterm_and_check_refusals(proc: object, http: aiohttp.ClientSession, port: int) -> float:
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    t0 = time.monotonic()
    status = 200
    for _ in range(50):
        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
            status = r.status
            body = await r.json()
        if status == 503:
            break
        await asyncio.sleep(0.02)
    assert status == 503 and "draining" in body["reasons"]
    assert time.monotonic() - t0 < 1.5  # "at once": the first polls already see it
    # New calls are refused cleanly, on every channel.
    async with http.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000})
        err = await next_event(ws, "error")
        assert err["code"] == "server_busy"
        await ws.receive()
        assert ws.close_code == 1013
    async with http.get(
        f"http://127.0.0.1:{port}/voximplant", headers={"Authorization": "Bearer s3cret"}
    ) as r:
        assert r.status == 503
    return t0


async def test_sigterm_lets_a_live_call_finish_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(write_config(tmp_path, port, drain_timeout_s=DRAIN_S), log)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(http, port)
            ws = await start_call(http, port)
            t0 = await sigterm_and_check_refusals(proc, http, port)
            # The live call goes on during the drain, then ends normally.
            await ws.send_json({"type": "text", "text": "Ещё один вопрос"})
            await next_event(ws, "turn", turn_id="t2")
            await ws.send_json({"type": "stop"})
            done = await next_event(ws, "done")
            assert done["summary"]["reason"] == "caller_hangup"
            await ws.close()
        code = await asyncio.to_thread(proc.wait, DRAIN_S + 5)
        assert code == 0
        # Nobody was left: the process did not wait out the drain timeout.
        assert time.monotonic() - t0 < DRAIN_S + 5
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


async def test_a_call_still_up_at_the_drain_timeout_hears_goodbye(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(write_config(tmp_path, port, drain_timeout_s=DRAIN_S), log)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(http, port)
            ws = await start_call(http, port)
            t0 = await sigterm_and_check_refusals(proc, http, port)
            said = await next_event(ws, "bot_text", final=True)
            while said["text"] != GOODBYE:  # the greeting's own final may come first
                said = await next_event(ws, "bot_text", final=True)
            assert time.monotonic() - t0 >= DRAIN_S - 0.5
            done = await next_event(ws, "done")
            assert done["summary"]["reason"] == "bot_hangup:server_shutdown"
            await ws.close()
        code = await asyncio.to_thread(proc.wait, DRAIN_S + 5)
        assert code == 0
        assert time.monotonic() - t0 <= DRAIN_S + 5
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_sigint_ends_live_calls_at_once_and_exits_0(tmp_path: Path) -> None:
    """Ctrl-C is a person stopping the demo, not a deploy: no drain wait, no goodbye."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(write_config(tmp_path, port, drain_timeout_s=60), log)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(http, port)
            ws = await start_call(http, port)
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            done = await next_event(ws, "done")
            assert done["summary"]["reason"] in ("server_shutdown", "bot_hangup:server_shutdown")
            await ws.close()
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


MONTHS = "января февраля марта апреля мая июня июля августа сентября октября ноября декабря"


def weekday_ahead() -> str:
    """A weekday 2-8 days ahead in words («3 декабря»): inside the salon's week."""
    day = dt.date.today() + dt.timedelta(days=2)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return f"{day.day} {MONTHS.split()[day.month - 1]}"


async def test_a_booking_confirmed_during_the_drain_is_in_the_store(tmp_path: Path) -> None:
    """The caller says «да» to the read-back after SIGTERM: the booking is committed and
    confirmed before the process exits, and it is in the store afterwards."""
    port = free_port()
    log = tmp_path / "serve.log"
    cfg = write_config(tmp_path, port, drain_timeout_s=DRAIN_S)
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["dialogue"]["factory"] = "booking"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'bookings.sqlite3'}"
    proc = start_serve(cfg, log, "--store", store)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_up(http, port)
            ws = await start_call(http, port)
            line = (
                f"Здравствуйте, хочу подстричься {weekday_ahead()} в 15:00 к Ивану, "
                "меня зовут Анна, телефон +7 916 123-45-67"
            )
            await ws.send_json({"type": "text", "text": line})
            readback = await next_event(ws, "bot_text", final=True, turn_id="t2")
            assert "верно" in readback["text"].lower(), readback
            await sigterm_and_check_refusals(proc, http, port)
            await ws.send_json({"type": "text", "text": "Да, всё верно"})
            confirmed = await next_event(ws, "bot_text", final=True, turn_id="t3")
            assert "15:00" in confirmed["text"] or "запис" in confirmed["text"].lower()
            await ws.send_json({"type": "stop"})
            await next_event(ws, "done")
            await ws.close()
        assert await asyncio.to_thread(proc.wait, DRAIN_S + 5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "voicebot.cli", "bookings", "list", "--json", "--store", store],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(listed.stdout)
    assert [(b["name"], b["phone"]) for b in rows] == [("Анна", "+79161234567")], rows
    assert "Traceback" not in log.read_text()
