"""A fake Asterisk `AudioSocket()` client.

It plays the Asterisk side of one call: the dialplan's register POST, the 16-byte UUID
message, caller audio as 320-byte slin frames paced against absolute 20 ms deadlines,
DTMF, hang-up; and it records every message the server sends with its arrival time,
flagging anything Asterisk would reject (a type other than 0x10/0x00, audio frames
that are not exactly 320 bytes).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp

FRAME = 320  # 20 ms of slin16 at 8 kHz
FRAME_S = 0.02


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


@dataclass
class Received:
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic, 320 B)
    hangups: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def pcm(self) -> bytes:
        return b"".join(p for _, p in self.frames)

    def runs(self, idle_gap_s: float = 0.06) -> list[list[float]]:
        """Arrival times split where the bot was idle (no audio to send)."""
        out: list[list[float]] = []
        for t, _ in self.frames:
            if out and t - out[-1][-1] < idle_gap_s:
                out[-1].append(t)
            else:
                out.append([t])
        return out


class FakeAsterisk:
    def __init__(
        self, host: str, port: int, call_uuid: str | None = None, *, kind: int = 0x10
    ) -> None:
        self.host = host
        self.port = port
        self.kind = kind  # 0x10 = 8 kHz slin; 0x12 = 16 kHz (recent Asterisk)
        self.frame = {0x10: 320, 0x12: 640}[kind]
        self.uuid = call_uuid or str(uuidlib.uuid4())
        self.got = Received()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()  # the server closed the connection
        self.last_sent_at = 0.0

    async def register(
        self,
        base_url: str,
        caller_id: str | None,
        did: str | None,
        utterances: list[str] | None = None,
        *,
        form: bool = False,
    ) -> int:
        """What the dialplan's CURL() does before AudioSocket()."""
        body: dict[str, Any] = {"uuid": self.uuid, "caller_id": caller_id, "did": did}
        if utterances is not None:
            body["utterances"] = utterances
        async with aiohttp.ClientSession() as http:
            url = base_url.rstrip("/") + "/audiosocket/register"
            if form:
                data = {k: v for k, v in body.items() if isinstance(v, str)}
                async with http.post(url, data=data) as r:
                    return r.status
            async with http.post(url, json=body) as r:
                return r.status

    async def connect(self, send_uuid: bool = True) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Asterisk does
        self._task = asyncio.create_task(self._read())
        if send_uuid:
            await self.send(frame(0x01, uuidlib.UUID(self.uuid).bytes))
            # Asterisk streams the line's audio from the first moment: its first frame
            # tells the server the line's rate.
            await self.audio(bytes(self.frame))

    async def __aenter__(self) -> FakeAsterisk:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def audio(self, pcm: bytes) -> None:
        await self.send(frame(self.kind, pcm))
        self.last_sent_at = time.monotonic()

    async def stream(self, pcm: bytes, *, realtime: bool = True) -> None:
        t0 = time.monotonic()
        size = self.frame
        for i, off in enumerate(range(0, len(pcm), size)):
            chunk = pcm[off : off + size]
            chunk += bytes(size - len(chunk))
            if realtime:
                delay = t0 + i * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.audio(chunk)

    async def dtmf(self, digit: str) -> None:
        await self.send(frame(0x03, digit.encode()))

    async def hangup(self) -> None:
        await self.send(frame(0x00))

    async def aclose(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while True:
                header = await self.reader.readexactly(3)
                kind, length = struct.unpack(">BH", header)
                payload = await self.reader.readexactly(length)
                now = time.monotonic()
                if kind == self.kind:
                    if length != self.frame:
                        self.got.violations.append(f"audio frame of {length} bytes")
                    self.got.frames.append((now, payload))
                elif kind == 0x00:
                    self.got.hangups += 1
                else:
                    self.got.violations.append(f"server sent type 0x{kind:02x}")
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def first_audio_after(self, t: float, min_rms: float = 100.0) -> float | None:
        from tests.fake_voximplant import rms

        for at, pcm in self.got.frames:
            if at >= t and rms(pcm) >= min_rms:
                return at
        return None


def spacing_stats(times: list[float]) -> tuple[float, float]:
    """(mean spacing, max lead over the 20 ms schedule), both in ms.

    Frame k's offset from its slot is t_k - k*20 ms; a paced sender keeps every offset
    at or above the schedule's (its median: most frames are on time), so the largest
    shortfall below the median is how far any frame ran ahead. A late first frame or
    a catch-up after a stall does not count; a burst does."""
    if len(times) < 2:
        return 0.0, 0.0
    mean = (times[-1] - times[0]) / (len(times) - 1) * 1000
    offsets = sorted(t - i * FRAME_S for i, t in enumerate(times))
    lead = (offsets[len(offsets) // 2] - offsets[0]) * 1000
    return mean, lead
