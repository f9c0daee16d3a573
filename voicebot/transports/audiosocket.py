"""Asterisk AudioSocket: how Zadarma calls (SIP -> Asterisk) reach the bot.

Asterisk's `AudioSocket(uuid, host:port)` dialplan app connects to us over TCP. Every
message is `type (1 byte) | length (2 bytes, big-endian) | payload`:

    0x01 UUID (16 raw bytes, always first)   0x10 audio: slin16 LE, 8 kHz, mono
    0x03 DTMF (1 ASCII byte)                 0x00 hang-up   0xFF error (code byte)

Asterisk writes whatever we send straight into the call, with no jitter buffer and no
pacing, so we own the playout clock: one 320-byte (20 ms) frame per 20 ms against
absolute deadlines, nothing while idle (the app needs no keep-alive frames), and we
never send anything but 0x10 and 0x00 (any other type ends Asterisk's session).
Barge-in simply drops our local queue: nothing is buffered on the Asterisk side.

AudioSocket carries only the UUID; the dialplan posts caller id and DID to
`POST /audiosocket/register` (keyed by that UUID) just before `AudioSocket()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import struct
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voicebot.clock import Clock, RealClock
from voicebot.redact import mask_number
from voicebot.transports import g711
from voicebot.transports.base import AckPlayout, at_capacity, finish_call

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF

SAMPLE_RATE = 8000
FRAME_BYTES = g711.pcm_bytes(SAMPLE_RATE)  # 320
FRAME_S = g711.FRAME_MS / 1000
# Largest payload accepted per type: anything bigger is a broken or hostile peer.
MAX_PAYLOAD = {
    KIND_HANGUP: 64,
    KIND_UUID: 16,
    KIND_DTMF: 1,
    KIND_AUDIO: FRAME_BYTES * 10,  # up to 200 ms per message (ptime is usually 20)
    KIND_ERROR: 64,
}
MAX_CATCHUP_FRAMES = 5  # after a longer stall the schedule restarts instead of bursting
FIRST_FRAME_TIMEOUT_S = 5.0
HANGUP_DRAIN_CAP_S = 10.0
REGISTER_ROUTE = "/audiosocket/register"
DTMF_DIGITS = frozenset("0123456789*#ABCD")

_HEADER = struct.Struct(">BH")


class ProtocolError(Exception):
    """The peer broke the framing: the connection is closed, other calls go on."""


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


HANGUP_FRAME = encode_frame(KIND_HANGUP)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next message, or None at a clean end of stream (between messages)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(f"truncated header ({len(exc.partial)} of 3 bytes)") from exc
    kind, length = _HEADER.unpack(header)
    limit = MAX_PAYLOAD.get(kind)
    if limit is None:
        raise ProtocolError(f"unknown message type 0x{kind:02x}")
    if length > limit:
        raise ProtocolError(f"type 0x{kind:02x} with {length} bytes (limit {limit})")
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(f"truncated payload ({len(exc.partial)} of {length} bytes)") from exc
    return kind, payload


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class CallInfo:
    caller_id: str | None
    called_id: str | None
    utterances: tuple[str, ...] | None = None  # offline emulator transcript (tests, bench)
    registered_at: float = 0.0


class CallRegistry:
    """Caller id / DID posted by the dialplan, waiting for their AudioSocket connection.

    Bounded and expiring: a dialplan that registers and never connects costs nothing.
    """

    def __init__(
        self,
        ttl_s: float = 120.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._calls: OrderedDict[str, CallInfo] = OrderedDict()

    def register(
        self,
        call_uuid: str,
        caller_id: str | None,
        called_id: str | None,
        utterances: tuple[str, ...] | None = None,
    ) -> None:
        self._expire()
        key = str(uuidlib.UUID(call_uuid))
        self._calls.pop(key, None)
        self._calls[key] = CallInfo(caller_id, called_id, utterances, self._clock())
        while len(self._calls) > self.max_entries:
            self._calls.popitem(last=False)

    def pop(self, call_uuid: str) -> CallInfo | None:
        self._expire()
        return self._calls.pop(call_uuid, None)

    def __len__(self) -> int:
        return len(self._calls)

    def _expire(self) -> None:
        cutoff = self._clock() - self.ttl_s
        while self._calls:
            key, info = next(iter(self._calls.items()))
            if info.registered_at >= cutoff:
                break
            del self._calls[key]


def _trusted_peer(remote: str | None) -> bool:
    """The register endpoint is for the Asterisk box: loopback or a private network."""
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def _clean_number(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()[:64]
    return text if text and text.isprintable() else None


def add_register_route(
    app: web.Application,
    registry: CallRegistry,
    *,
    trusted: Callable[[str | None], bool] = _trusted_peer,
) -> None:
    """Mount `POST /audiosocket/register`: {uuid, caller_id, did} as JSON or a form
    (Asterisk's `CURL(url,post-data)` sends the latter)."""

    async def register(request: web.Request) -> web.Response:
        if not trusted(request.remote):
            log.warning("audiosocket register: refused peer %s", request.remote)
            raise web.HTTPForbidden(text="not allowed from this address")
        if request.content_length is not None and request.content_length > 4096:
            raise web.HTTPRequestEntityTooLarge(max_size=4096, actual_size=request.content_length)
        body: Mapping[str, Any]
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except (ValueError, RecursionError) as exc:
                raise web.HTTPBadRequest(text="invalid JSON") from exc
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="expected a JSON object")
        else:
            body = {**request.query, **(await request.post())}
        call_uuid = body.get("uuid")
        try:
            canonical = str(uuidlib.UUID(str(call_uuid)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="uuid must be a UUID") from exc
        caller = _clean_number(body.get("caller_id", body.get("caller")))
        called = _clean_number(body.get("did", body.get("called_id", body.get("exten"))))
        utter = body.get("utterances")
        utterances = (
            tuple(utter)
            if isinstance(utter, list) and all(isinstance(u, str) for u in utter)
            else None
        )
        registry.register(canonical, caller, called, utterances)
        log.info(
            "audiosocket register %s: %s -> %s", canonical, mask_number(caller), mask_number(called)
        )
        return web.json_response({"ok": True, "uuid": canonical})

    app.router.add_post(REGISTER_ROUTE, register)


# --------------------------------------------------------------------------- transport


class AudioSocketTransport:
    """CallTransport over one AudioSocket connection: we are the playout clock."""

    kind = "audiosocket"
    sample_rate = SAMPLE_RATE

    def __init__(self, writer: asyncio.StreamWriter, clock: Clock | None = None) -> None:
        self._writer = writer
        self._clock = clock or RealClock()
        self.playout = AckPlayout(SAMPLE_RATE)
        self._queue = bytearray()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._written = 0  # bot audio bytes actually written (padding excluded)
        self.closed = False
        self.frames_sent = 0
        self.clears = 0
        self.restarts = 0  # schedule re-anchored after a stall longer than the catch-up

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name="audiosocket-sender")

    async def play(self, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        if len(pcm) % g711.SAMPLE_WIDTH:
            log.warning("audiosocket: dropping a trailing odd byte of bot audio")
            pcm = pcm[:-1]
        self._queue += pcm
        self.playout.add(len(pcm))
        self._wake.set()

    async def clear(self) -> None:
        """Barge-in: Asterisk holds nothing, so dropping our queue stops the bot now."""
        self._queue.clear()
        self.playout.clear()
        self.clears += 1

    async def hangup(self, reason: str) -> None:
        if self.closed:
            return
        log.info("audiosocket: bot hangs up (%s)", reason)
        deadline = self._clock.monotonic() + HANGUP_DRAIN_CAP_S
        while self._queue and self._sender is not None and not self._sender.done():
            if self._clock.monotonic() >= deadline:
                break
            await self._clock.sleep(FRAME_S)
        await self.aclose(send_hangup=True)

    async def send_event(self, event: Mapping[str, Any]) -> None:
        return None  # audio-only transport

    async def aclose(self, *, send_hangup: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        self._queue.clear()
        if send_hangup and not self._writer.is_closing():
            with contextlib.suppress(Exception):
                self._writer.write(HANGUP_FRAME)
                await self._writer.drain()
        self._writer.close()

    async def _send_loop(self) -> None:
        deadline = self._clock.monotonic()
        try:
            while not self.closed:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    # Idle time is not owed: restart the schedule, but never earlier
                    # than the slot after the last frame sent.
                    deadline = max(deadline, self._clock.monotonic())
                    continue
                now = self._clock.monotonic()
                if now < deadline:
                    await self._clock.sleep(deadline - now)
                    continue
                if now - deadline > MAX_CATCHUP_FRAMES * FRAME_S:
                    self.restarts += 1
                    deadline = now
                real = bytes(self._queue[:FRAME_BYTES])
                del self._queue[:FRAME_BYTES]
                frame = real + g711.silence(FRAME_BYTES - len(real))
                self._writer.write(encode_frame(KIND_AUDIO, frame))
                await self._writer.drain()
                self.frames_sent += 1
                self._written += len(real)
                self.playout.ack(g711.pcm_ms(self._written, SAMPLE_RATE))
                deadline += FRAME_S
        except (ConnectionError, OSError) as exc:
            log.info("audiosocket: write failed (%s); output stopped", type(exc).__name__)
            self.closed = True

    # After a clear the played counter must not jump back: AckPlayout keeps `played`
    # monotonic and sets queued = played, and `_written` only grows.


# --------------------------------------------------------------------------- connections


@dataclass
class CallStats:
    uuid: str | None = None
    frames_in: int = 0
    dtmf: list[str] = field(default_factory=list)
    end: str = ""  # hangup | eof | error | protocol | shutdown | bot
    summary: Mapping[str, Any] | None = None


class AudioSocketCall:
    """One TCP connection from Asterisk."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        runtime: Any,
        registry: CallRegistry,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.runtime = runtime
        self.registry = registry
        self.transport: AudioSocketTransport | None = None
        self.session: Any = None
        self._run_task: asyncio.Task[None] | None = None
        self.stats = CallStats()
        self.finished = asyncio.Event()

    async def serve(self) -> CallStats:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve()
        except ProtocolError as exc:
            self.stats.end = "protocol"
            log.warning("audiosocket %s: protocol error: %s; closing", self.stats.uuid, exc)
        except (ConnectionError, OSError) as exc:
            self.stats.end = self.stats.end or "eof"
            log.info("audiosocket %s: connection lost (%s)", self.stats.uuid, type(exc).__name__)
        except Exception:
            # A bug on our side ends this call cleanly and no other.
            self.stats.end = "internal"
            log.exception("audiosocket %s: internal error; closing", self.stats.uuid)
        finally:
            await self._finish()
        return self.stats

    async def _serve(self) -> None:
        try:
            first = await asyncio.wait_for(read_frame(self.reader), FIRST_FRAME_TIMEOUT_S)
        except TimeoutError as exc:
            raise ProtocolError("no UUID message in time") from exc
        if first is None:
            self.stats.end = "eof"
            return
        kind, payload = first
        if kind != KIND_UUID or len(payload) != 16:
            raise ProtocolError(f"first message is type 0x{kind:02x}, not a 16-byte UUID")
        call_uuid = str(uuidlib.UUID(bytes=payload))
        self.stats.uuid = call_uuid
        info = self.registry.pop(call_uuid) or CallInfo(None, None)
        log.info(
            "audiosocket %s: call from %s to %s",
            call_uuid,
            mask_number(info.caller_id),
            mask_number(info.called_id),
        )
        if at_capacity(self.runtime):
            log.warning("audiosocket %s: refusing the call: all slots busy", call_uuid)
            self.stats.end = "busy"
            self.writer.write(HANGUP_FRAME)
            return
        self.transport = AudioSocketTransport(self.writer, getattr(self.runtime, "clock", None))
        self.session = self.runtime.new_session(
            self.transport,
            channel="audiosocket",
            caller_id=info.caller_id,
            called_id=info.called_id,
            metadata={"uuid": call_uuid},
            stt_metadata=self._emulator_metadata(info, call_uuid),
        )
        self.transport.start()
        self._run_task = asyncio.create_task(self._run_session(), name="audiosocket-session")
        while True:
            frame = await read_frame(self.reader)
            if frame is None:
                self.stats.end = self.stats.end or "eof"
                return
            kind, payload = frame
            if kind == KIND_AUDIO:
                if len(payload) % g711.SAMPLE_WIDTH:
                    raise ProtocolError(f"odd audio payload of {len(payload)} bytes")
                self.stats.frames_in += 1
                if payload:
                    self.session.feed_audio(payload)
            elif kind == KIND_DTMF:
                digit = payload.decode("ascii", "replace").upper()
                if digit in DTMF_DIGITS:
                    self.stats.dtmf.append(digit)
                    self.session.feed_dtmf(digit)
                else:
                    log.warning("audiosocket %s: ignoring DTMF %r", call_uuid, payload)
            elif kind == KIND_HANGUP:
                self.stats.end = "hangup"
                return
            elif kind == KIND_ERROR:
                code = payload[0] if payload else 0
                log.warning("audiosocket %s: Asterisk reports error 0x%02x", call_uuid, code)
                self.stats.end = "error"
                return
            else:  # a second UUID
                raise ProtocolError(f"unexpected message type 0x{kind:02x}")

    def _emulator_metadata(self, info: CallInfo, call_uuid: str) -> tuple[tuple[str, str], ...]:
        if info.utterances is None or not getattr(self.runtime, "emulator_hooks", False):
            return ()
        return (
            ("x-emulator-utterances-bin", json.dumps(list(info.utterances), ensure_ascii=False)),
            ("x-emulator-script-id", call_uuid),
        )

    async def _run_session(self) -> None:
        try:
            self.stats.summary = await self.session.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audiosocket %s: session failed", self.stats.uuid)
        # The session is over (bot hung up, or failed): make sure Asterisk knows.
        if self.transport is not None and not self.transport.closed:
            self.stats.end = self.stats.end or "bot"
            await self.transport.aclose(send_hangup=True)

    def abort(self, reason: str = "shutdown") -> None:
        """Server shutdown: end the session; closing the socket ends the read loop."""
        self.stats.end = self.stats.end or reason
        if self.session is not None:
            self.session.end(reason)
        self.writer.close()

    async def _finish(self) -> None:
        await finish_call(
            self.runtime,
            self.session,
            self._run_task,
            self.transport,
            f"audiosocket {self.stats.uuid}",
        )
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        log.info("audiosocket %s: closed (%s)", self.stats.uuid, self.stats.end)
        self.finished.set()


class AudioSocketServer(asyncio.AbstractServer):
    """The listening server plus its live calls, so close() also ends the calls."""

    def __init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self.calls: set[AudioSocketCall] = set()
        self._tasks: set[asyncio.Task[CallStats]] = set()
        self.on_call: Callable[[AudioSocketCall], None] | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for call in list(self.calls):
            call.abort("shutdown")

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop listening and end live calls, waiting for them a bounded time."""
        self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.wait_closed(), timeout_s)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        assert self._server is not None
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start_serving(self) -> None:
        assert self._server is not None
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])


async def start_audiosocket(
    runtime: Any,
    host: str,
    port: int,
    *,
    registry: CallRegistry | None = None,
) -> AudioSocketServer:
    """Listen for Asterisk. Caller ids come from `registry`, by default the one the
    register route was mounted with (`runtime.audiosocket_registry`)."""
    if registry is None:
        registry = getattr(runtime, "audiosocket_registry", None)
        if registry is None:
            registry = CallRegistry()
            with contextlib.suppress(AttributeError):
                runtime.audiosocket_registry = registry
    server = AudioSocketServer()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call = AudioSocketCall(reader, writer, runtime, registry)
        server.calls.add(call)
        if server.on_call is not None:
            server.on_call(call)
        task = asyncio.current_task()
        if task is not None:
            server._tasks.add(task)  # type: ignore[arg-type]
        try:
            await call.serve()
        finally:
            server.calls.discard(call)
            if task is not None:
                server._tasks.discard(task)  # type: ignore[arg-type]

    server._server = await asyncio.start_server(on_connect, host, port)
    return server


# --------------------------------------------------------------------------- CLI


async def _main(args: argparse.Namespace) -> int:
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(getattr(args, "config", None))
    acfg = cfg.telephony.audiosocket
    host = getattr(args, "host", None) or acfg.host
    port = acfg.port if getattr(args, "port", None) is None else args.port
    runtime = await Runtime.create(cfg, store=getattr(args, "store", None))
    registry = CallRegistry()
    runtime.audiosocket_registry = registry  # type: ignore[attr-defined]
    app = web.Application()
    add_register_route(app, registry)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    server: AudioSocketServer | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await start_audiosocket(runtime, host, port, registry=registry)
        log.info("AudioSocket listening on %s:%d", host, server.port)
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port)
        await site.start()
        log.info(
            "register endpoint: http://%s:%d%s", cfg.server.host, cfg.server.port, REGISTER_ROUTE
        )
        await stop.wait()
    finally:
        if server is not None:
            await server.aclose()
        await runner.cleanup()
        await runtime.aclose()
    return 0


def run_cli(args: argparse.Namespace) -> Any:
    """`voicebot audiosocket --port P [--host H] [--config F] [--store URL]`."""
    return _main(args)
