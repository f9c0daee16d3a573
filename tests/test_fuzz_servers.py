"""Property-based fuzzing of the inbound handlers behind real sockets: the browser
`/ws` messages, the Voximplant media WebSocket, the AudioSocket TCP server and the
AudioSocket register endpoint.

Properties: a bad message gets a clear error event or a clean close, never an internal
error (close 1011, `internal_error`, HTTP 500); after every example the server has no
call left running, and after all of them no task or socket is left behind. The engine
is replaced by the test fakes, so each example is milliseconds. Budget: see
tests/fuzz_support.py (`VOICEBOT_FUZZ_EXAMPLES`).
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from tests.browser_fixtures import browser_host
from tests.fake_host import FakeHost
from tests.fake_voximplant import telephony_host
from tests.fuzz_support import FUZZ, json_values, objects_with, settle_tasks, socket_fds
from tests.test_fuzz_decoders import frames, vox_messages
from voicebot.config import Config
from voicebot.server import create_app
from voicebot.transports import audiosocket as asock
from voicebot.transports import audiosocket_register as reg
from voicebot.transports import audiosocket_wire as asw
from voicebot.transports import voximplant

pytestmark = pytest.mark.slow

SECRET = "fuzz-secret"


@dataclass
class Servers:
    runner: asyncio.Runner
    browser: TestClient
    browser_runtime: FakeHost
    vox: TestClient
    vox_runtime: FakeHost
    audiosocket: asock.AudioSocketServer
    registry: reg.CallRegistry

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


async def _start() -> tuple[Any, ...]:
    b_runtime = browser_host()
    b_runtime.cfg.server.max_session_s = 30
    browser = TestClient(TestServer(create_app(b_runtime)))  # type: ignore[arg-type]
    await browser.start_server()
    cfg = Config()
    cfg.telephony.voximplant.secret = SECRET
    t_runtime = telephony_host(cfg)
    app = web.Application()
    handler = voximplant.make_handler(
        t_runtime, cfg.telephony.voximplant, max_message_bytes=cfg.server.max_message_bytes
    )
    app.router.add_get(voximplant.ROUTE, handler)
    registry = t_runtime.audiosocket_registry
    reg.add_register_route(app, registry)
    vox = TestClient(TestServer(app))
    await vox.start_server()
    server = await asock.start_audiosocket(t_runtime, registry, "127.0.0.1", 0)
    return browser, b_runtime, vox, t_runtime, server, registry


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    fds = socket_fds()
    runner = asyncio.Runner()
    browser, b_rt, vox, t_rt, server, registry = runner.run(_start())
    s = Servers(runner, browser, b_rt, vox, t_rt, server, registry)
    try:
        yield s
        # Between examples nothing may stay behind: no task of a call, no session.
        left = runner.run(settle_tasks())
        assert not left, f"leaked tasks: {left}"
        assert not b_rt.live and not t_rt.live, "calls not released"
    finally:
        runner.run(server.aclose())
        runner.run(vox.close())
        runner.run(browser.close())
        runner.close()
    assert socket_fds() <= fds, "leaked sockets"


# --------------------------------------------------------------------------- browser /ws

browser_messages = st.one_of(
    objects_with(
        {
            "type": st.sampled_from(["start", "text", "playback", "dtmf", "stop", "x"]),
            "sample_rate": st.sampled_from([8000, 16000, 48000, 44100, True]),
            "language": st.sampled_from(["ru-RU", "en", "", "x" * 100]),
            "text": st.text(max_size=50),
            "played_ms": st.floats(allow_nan=True) | st.integers(),
            "digit": st.text(max_size=2),
            "emulator_utterances": st.lists(st.text(max_size=10), max_size=3),
        }
    ).map(lambda m: json.dumps(m, ensure_ascii=False)),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.binary(max_size=641),
    st.just("[" * 3000),
)


async def _browser_call(client: TestClient, messages: list[str | bytes]) -> None:
    async with client.ws_connect("/ws") as ws:
        for m in messages:
            if ws.closed:
                break
            await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
        if not ws.closed:
            await ws.send_str('{"type": "stop"}')
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    assert event.get("code") != "internal_error", event
        assert ws.close_code != 1011, ws.close_code
    await settle_tasks(lambda t: "browser" in repr(t.get_coro()))


@FUZZ
@given(st.lists(browser_messages, min_size=1, max_size=8))
def test_browser_messages(servers: Servers, messages: list[str | bytes]) -> None:
    servers.run(_browser_call(servers.browser, messages))


# --------------------------------------------------------------------------- Voximplant


async def _vox_call(client: TestClient, messages: list[str | bytes]) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with client.ws_connect("/voximplant", headers=headers, protocols=("chat",)) as ws:
        for m in messages:
            if ws.closed:
                break
            await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
        if not ws.closed:
            await ws.close()
        assert ws.close_code != 1011, ws.close_code
    for _ in range(100):  # the call ends in its own task after the socket closes
        if not voximplant._ACTIVE:
            break
        await asyncio.sleep(0.01)
    assert not voximplant._ACTIVE


@FUZZ
@given(st.lists(vox_messages | st.binary(max_size=50), min_size=1, max_size=10))
def test_voximplant_messages(servers: Servers, messages: list[str | bytes]) -> None:
    servers.run(_vox_call(servers.vox, messages))


# --------------------------------------------------------------------------- AudioSocket


def _uuid_frame() -> bytes:
    return asw.encode_frame(asw.KIND_UUID, uuid.uuid4().bytes)


async def _audiosocket_call(server: asock.AudioSocketServer, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    except (ConnectionError, OSError):
        pass  # the server closed on a protocol error: that is the clean outcome
    finally:
        writer.close()
        await writer.wait_closed()
    await settle_tasks(lambda t: "audiosocket" in repr(t.get_coro()).lower())


@FUZZ
@given(st.booleans(), st.lists(frames, max_size=8).map(b"".join))
def test_audiosocket_connections(servers: Servers, with_uuid: bool, data: bytes) -> None:
    servers.run(
        _audiosocket_call(servers.audiosocket, (_uuid_frame() if with_uuid else b"") + data)
    )


# --------------------------------------------------------------------------- register


register_bodies = st.one_of(
    objects_with(
        {
            "uuid": st.uuids().map(str) | st.text(max_size=40),
            "caller_id": st.text(max_size=70) | st.integers(),
            "did": st.text(max_size=20),
            "utterances": st.lists(st.text(max_size=10), max_size=3),
        }
    ).map(lambda b: ("application/json", json.dumps(b).encode())),
    st.binary(max_size=300).map(lambda b: ("application/json", b)),
    st.dictionaries(st.sampled_from(["uuid", "caller_id", "did", "x"]), st.text(max_size=40)).map(
        lambda d: (
            "application/x-www-form-urlencoded",
            "&".join(f"{k}={v}" for k, v in d.items()).encode(),
        )
    ),
    st.binary(max_size=5000).map(lambda b: ("text/plain", b)),
)


async def _register(client: TestClient, content_type: str, body: bytes) -> None:
    resp = await client.post(
        reg.REGISTER_ROUTE,
        data=body,
        headers={"Content-Type": content_type, "Connection": "close"},
    )
    assert resp.status in (200, 400, 403, 413, 415), (resp.status, await resp.text())
    await resp.release()


@FUZZ
@given(register_bodies)
def test_register_endpoint(servers: Servers, body: tuple[str, bytes]) -> None:
    servers.run(_register(servers.vox, *body))


def test_audiosocket_frame_header_is_three_bytes() -> None:
    # The fuzzers build frames by hand: keep them honest about the wire format.
    assert asw.encode_frame(0x10, b"ab") == struct.pack(">BH", 0x10, 2) + b"ab"
