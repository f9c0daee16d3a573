"""Helpers for the browser protocol tests: a scripted fake session and a WS reader.

The fake session follows `CallSession`'s contract (greets, answers typed text and
audio, emits seq-stamped events through the transport, sends `done` last) without any
provider, so the codec can be tested on its own: every byte the codec gets wrong shows
up here rather than as a flaky engine test.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.fake_host import FakeHost
from voicebot.config import Config
from voicebot.transports.browser import BrowserTransport

GREETING = "Здравствуйте! Салон «Стиль»."


def tone(sample_rate: int, ms: int, freq: float = 440.0) -> bytes:
    n = sample_rate * ms // 1000
    return struct.pack(
        f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / sample_rate)) for i in range(n))
    )


class FakeSession:
    """Echoes typed text; reports how much caller audio it got when asked via text."""

    def __init__(self, transport: BrowserTransport, session_id: str, *, crash: bool = False):
        self.session_id = session_id
        self.transport = transport
        self.crash = crash
        self.audio = bytearray()
        self.texts: list[str] = []
        self.dtmf: list[str] = []
        self.ended: str | None = None
        self._inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._seq = 0
        self._turn = 0

    async def _emit(self, type_: str, **fields: Any) -> None:
        self._seq += 1
        await self.transport.send_event({"type": type_, "seq": self._seq, **fields})

    async def _say(self, text: str) -> None:
        self._turn += 1
        turn_id = f"t{self._turn}"
        half = len(text) // 2
        await self._emit("bot_text", turn_id=turn_id, text=text[:half], final=False)
        await self._emit("bot_text", turn_id=turn_id, text=text[half:], final=False)
        await self._emit("bot_text", turn_id=turn_id, text=text, final=True)
        await self.transport.play(tone(self.transport.sample_rate, 300))
        await self._emit("turn", turn_id=turn_id, latency_ms={"total": 123.0})

    async def run(self) -> Mapping[str, Any]:
        await self._say(GREETING)
        reason = "?"
        while True:
            kind, value = await self._inbox.get()
            if kind == "end":
                reason = value
                break
            if self.crash:
                raise RuntimeError("boom: internal details that must not reach the page")
            if kind == "text":
                self.texts.append(value)
                seg = {"id": f"x{len(self.texts)}", "revision": 1, "partial": False, "text": value}
                await self._emit("transcript", segment=seg)
                if value == "audio?":
                    await self._say(f"audio bytes: {len(self.audio)}")
                elif value == "book":
                    await self._emit("booking", booking={"id": 7, "service": "haircut"})
                    await self._say("Записала.")
                elif value == "bye":
                    await self._say("До свидания!")
                    await self.transport.hangup("dialogue")
                    reason = "bot_hangup"
                    break
                else:
                    await self._say(f"Вы сказали: {value}")
        summary = {"reason": reason, "texts": len(self.texts)}
        await self._emit("done", summary=summary)
        return summary

    def feed_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    def feed_text(self, text: str) -> None:
        self._inbox.put_nowait(("text", text))

    def feed_dtmf(self, digit: str) -> None:
        self.dtmf.append(digit)

    def end(self, reason: str = "caller_hangup") -> None:
        if self.ended is None:
            self.ended = reason
            self._inbox.put_nowait(("end", reason))


def browser_host(
    cfg: Config | None = None, *, offline: bool = True, emulator_hooks: bool = True
) -> FakeHost:
    """A fake host whose calls are scripted browser `FakeSession`s named s1, s2...;
    set `host.crash` to make the next ones fail."""

    def make(host: FakeHost, transport: Any, record: dict[str, Any]) -> FakeSession:
        return FakeSession(transport, f"s{len(host.opened)}", crash=host.crash)

    return FakeHost(cfg, make_session=make, offline=offline, emulator_hooks=emulator_hooks)


@dataclass
class Received:
    """Everything one client got, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    raw_text: list[str] = field(default_factory=list)
    close_code: int | None = None

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]


async def read_until(
    ws: aiohttp.ClientWebSocketResponse,
    got: Received,
    predicate: Any,
    within: float = 10.0,
) -> dict[str, Any] | None:
    """Read messages into `got` until `predicate(event)` holds or the socket closes."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                got.raw_text.append(msg.data)
                event = json.loads(msg.data)
                got.events.append(event)
                if predicate(event):
                    return event
            elif msg.type == aiohttp.WSMsgType.BINARY:
                got.audio.append(msg.data)
            else:
                got.close_code = ws.close_code
                return None


def of_type(type_: str, **match: Any) -> Any:
    def pred(event: dict[str, Any]) -> bool:
        return event.get("type") == type_ and all(event.get(k) == v for k, v in match.items())

    return pred
