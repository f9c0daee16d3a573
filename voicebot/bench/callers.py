"""The load generator's callers per transport: browser WebSocket, Voximplant media
WebSocket, Asterisk AudioSocket (each speaking the real wire protocol)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
import uuid
from typing import Any

import aiohttp

from voicebot.bench.caller import (
    AUDIOSOCKET_GAP_S,
    Caller,
    wait_or,
)

log = logging.getLogger("voicebot.bench.load")


class WsCaller(Caller):
    """The browser protocol (docs/websocket-protocol.md): PCM binary frames + JSON."""

    def __init__(self, http: aiohttp.ClientSession, url: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._http = http
        self._url = url
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._last_ack = -1.0
        self.finals = 0

    async def connect(self) -> None:
        """Open the browser WebSocket, send `start`, wait for `ready`."""
        self._ws = await self._http.ws_connect(self._url, max_msg_size=4 << 20)
        start = {"type": "start", "sample_rate": self.rate, "emulator_utterances": self.script}
        await self._ws.send_str(json.dumps(start, ensure_ascii=False))
        self._reader = asyncio.create_task(self._read())
        if not await wait_or(self._ready, self.ended, 15):
            raise ConnectionError(self.failed or "no `ready` in 15 s")

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        """One binary frame of PCM (and a `playback` ack every 100 ms)."""
        ws = self._ws
        if ws is None or ws.closed or self.ended.is_set():
            return
        await ws.send_bytes(frame)
        if ack:
            played = round(self.played_ms(now), 1)
            if played != self._last_ack:
                self._last_ack = played
                await ws.send_str(f'{{"type":"playback","played_ms":{played}}}')

    async def _read(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.on_bot_audio(len(msg.data), loop.time())
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_event(json.loads(msg.data))
                else:
                    break
        except Exception as exc:
            self.fail(f"ws read: {exc!r}")
        code = self._ws.close_code
        if not self.ended.is_set():
            if code == 1000 and self.ended_cleanly:
                self.ended.set()
            else:
                self.fail(f"ws closed with {code} before `done`")
        self.ended.set()

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "ready":
            self._ready.set()
        elif kind == "turn":
            self.stats.turn_events.append(
                {
                    "trigger": ev.get("trigger"),
                    "line": self.line_no,
                    "client_v2v_ms": self.reply_v2v,
                    **ev["latency_ms"],
                }
            )
            self.on_reply_done()
        elif kind == "bot_text" and ev.get("final") and not ev.get("text"):
            self.on_reply_done()  # nothing to say: no audio, no `turn` event
        elif kind == "transcript" and not ev.get("segment", {}).get("partial", True):
            self.finals = (self.finals or 0) + 1
        elif kind == "booking":
            self.stats.booking_ids.append(str(ev.get("booking", {}).get("id", "")))
        elif kind == "error":
            self.stats.error(f"server error event: {ev.get('code')}")
        elif kind == "done":
            self.ended_cleanly = True
            reason = str(ev.get("summary", {}).get("reason", ""))
            if reason.startswith("bot_hangup"):
                self.stats.bot_hangups += 1

    async def hangup(self) -> None:
        """Send `stop` and wait for the server's `done`."""
        ws = self._ws
        if ws is not None and not ws.closed and not self.ended.is_set():
            with contextlib.suppress(Exception):
                await ws.send_str('{"type":"stop"}')
                await wait_or(self.ended, self.ended, 10)
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


class VoximplantCaller(Caller):
    """Voximplant's media WebSocket (tests/fake_voximplant.py): JSON + base64 μ-law."""

    def __init__(self, http: aiohttp.ClientSession, url: str, secret: str, **kw: Any) -> None:
        super().__init__(**kw)
        from voicebot.transports import g711

        self._g711 = g711
        self._http = http
        self._url = url
        self._secret = secret
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._chunk = 0
        self._samples = 0
        self._idle: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        """Open the Voximplant media WebSocket (secret in the query) and send the caller's
        `start`."""
        call_id = uuid.uuid4().hex
        self._ws = await self._http.ws_connect(
            f"{self._url}?call={call_id}",
            headers={"Authorization": f"Bearer {self._secret}"},
            max_msg_size=4 << 20,
        )
        self._reader = asyncio.create_task(self._read())
        await self._ws.send_str(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": 0,
                    "start": {
                        "mediaFormat": {"encoding": "ULAW", "sampleRate": 8000, "channels": 1},
                        "customParameters": {
                            "call_id": call_id,
                            "x-emulator-utterances": self.script,
                        },
                    },
                }
            )
        )

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        """One `media` message (base64 μ-law) with chunk and timestamp."""
        ws = self._ws
        if ws is None or ws.closed or self.ended.is_set():
            return
        self._chunk += 1
        payload = base64.b64encode(self._g711.pcm_to_ulaw(frame)).decode()
        await ws.send_str(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": self._chunk,
                    "media": {
                        "chunk": self._chunk,
                        "timestamp": self._samples,
                        "payload": payload,
                    },
                }
            )
        )
        self._samples += len(frame) // 2

    async def _read(self) -> None:
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        continue
                    break
                ev = json.loads(msg.data)
                kind = ev.get("event")
                if kind == "media":
                    nbytes = len(base64.b64decode(ev["media"]["payload"])) * 2  # μ-law
                    self.on_bot_audio(nbytes, loop.time())
                    self._arm_idle(loop)
                elif kind == "stop":
                    self.ended_cleanly = True
                    self.stats.bot_hangups += 1
        except Exception as exc:
            self.fail(f"voximplant read: {exc!r}")
        if not (self.ended_cleanly or self.hanging_up or self.ended.is_set()):
            self.fail(f"voximplant ws closed with {self._ws.close_code}")
        self.ended.set()

    def _arm_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """No `turn` events on telephony: a reply is over when its audio stops coming
        and the buffer is about to run dry."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_at(self.playout_end + 0.1, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        self.on_reply_done()

    async def hangup(self) -> None:
        """Send the caller's `stop` and a `hangup` customEvent, then close."""
        self.hanging_up = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps({"event": "stop", "sequenceNumber": self._chunk + 1}))
                await ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        self.ended_cleanly = True
        self.ended.set()


class AudioSocketCaller(Caller):
    """Asterisk's AudioSocket (tests/fake_asterisk.py): 3-byte header, 320-byte slin."""

    def __init__(
        self, http: aiohttp.ClientSession, register_url: str, host: str, port: int, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._http = http
        self._register_url = register_url
        self._host, self._port = host, port
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        """Register the caller id and script, connect over TCP and send the UUID message."""
        call = uuid.uuid4()
        # The dialplan's register step (no caller id: the bot asks for the phone number).
        body = {"uuid": str(call), "utterances": self.script}
        async with self._http.post(self._register_url, json=body) as r:
            r.raise_for_status()
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self._writer = writer
        writer.write(struct.pack(">BH", 0x01, 16) + call.bytes)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def send_audio(self, frame: bytes, now: float, ack: bool) -> None:
        """One 0x10 audio message (320 bytes of slin16)."""
        w = self._writer
        if w is None or w.is_closing() or self.ended.is_set():
            return
        w.write(b"\x10\x01\x40" + frame)  # 0x10 audio, length 320

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readexactly(3)
                kind, length = head[0], int.from_bytes(head[1:3], "big")
                payload = await reader.readexactly(length) if length else b""
                if kind == 0x10:
                    if length != 320:
                        self.stats.error(f"audiosocket frame of {length} bytes")
                    self.on_bot_audio(length, loop.time(), paced=True)
                    self._arm_idle(loop)
                elif kind == 0x00:
                    self.ended_cleanly = True
                    self.stats.bot_hangups += 1
                    break
                elif kind == 0xFF:
                    self.stats.error(f"audiosocket error frame {payload[:8]!r}")
        except asyncio.IncompleteReadError:
            pass
        except Exception as exc:
            self.fail(f"audiosocket read: {exc!r}")
        if not (self.ended_cleanly or self.hanging_up or self.ended.is_set()):
            self.fail("audiosocket connection lost")
        self.ended.set()

    def _arm_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_later(AUDIOSOCKET_GAP_S * 2, self.on_reply_done)

    async def hangup(self) -> None:
        """Send the hang-up message (0x00) and close."""
        self.hanging_up = True
        w = self._writer
        if w is not None and not w.is_closing():
            with contextlib.suppress(Exception):
                w.write(b"\x00\x00\x00")
                await w.drain()
                w.close()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader_task, 5)
        self.ended_cleanly = True
        self.ended.set()
