"""Asterisk AudioSocket: how Zadarma calls (SIP -> Asterisk) reach the bot.

Asterisk's `AudioSocket(uuid, host:port)` dialplan app connects to us over TCP; the
wire codec is `audiosocket_wire` (pure), caller ids come from
`audiosocket_register.CallRegistry`, pacing is `pacing.PacedSender` and the call
lifecycle `telephony.TelephonyCall`.

The call's audio kind (0x10 = 8 kHz, 0x11-0x18 = 12-192 kHz slin) is that of Asterisk's
first audio message; we answer in the same kind. The call runs at 16 kHz when the line
offers 16 kHz or more, else at 8 kHz, and audio is resampled (soxr) between the line's
rate and the call's where they differ.

Asterisk writes whatever we send straight into the call, with no jitter buffer and no
pacing, so we own the playout clock: one 20 ms frame per 20 ms against
absolute deadlines (lead = one frame), nothing while idle (the app needs no
keep-alive frames). Barge-in simply drops our local queue: nothing is buffered on
the Asterisk side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot.clock import Clock, RealClock
from voicebot.redact import mask_number
from voicebot.transports import g711
from voicebot.transports.audiosocket_register import CallInfo, CallRegistry
from voicebot.transports.audiosocket_wire import (
    AUDIO_KINDS,
    HANGUP_FRAME,
    HEADER_BYTES,
    KIND_AUDIO,
    AudioMessage,
    AudioSocketMessage,
    DtmfMessage,
    ErrorMessage,
    HangupMessage,
    ProtocolError,
    UuidMessage,
    decode_message,
    encode_audio,
    parse_header,
)
from voicebot.transports.base import AckPlayout
from voicebot.transports.host import CallHost
from voicebot.transports.pacing import PacedOutput, PacedSender
from voicebot.transports.resample import StreamResampler, resample_chunk, session_rate
from voicebot.transports.telephony import HANGUP_DRAIN_CAP_S, CallStats, TelephonyCall

log = logging.getLogger(__name__)

MAX_CATCHUP_FRAMES = 5  # after a longer stall the schedule restarts instead of bursting
FIRST_FRAME_TIMEOUT_S = 5.0


async def read_message(reader: asyncio.StreamReader) -> AudioSocketMessage | None:
    """The next message, or None at a clean end of stream (between messages)."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(
            "truncated", f"truncated header ({len(exc.partial)} of 3 bytes)"
        ) from exc
    kind, length = parse_header(header)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            "truncated", f"truncated payload ({len(exc.partial)} of {length} bytes)"
        ) from exc
    return decode_message(kind, payload)


class AudioSocketTransport(PacedOutput):
    """CallTransport over one AudioSocket connection: we are the playout clock."""

    def __init__(
        self, writer: asyncio.StreamWriter, clock: Clock | None = None, kind: int = KIND_AUDIO
    ) -> None:
        clock = clock or RealClock()
        self._writer = writer
        self.kind = kind
        self.line_rate = AUDIO_KINDS[kind]
        self.sample_rate = session_rate(self.line_rate)  # what the session speaks
        self.playout = AckPlayout(self.sample_rate)
        self._written = 0  # bot audio bytes actually written (padding excluded)
        self.pacer = PacedSender(
            self._write,
            clock,
            sample_rate=self.line_rate,
            max_lead_ms=g711.FRAME_MS,
            max_catchup_ms=MAX_CATCHUP_FRAMES * g711.FRAME_MS,
            pad=True,
            on_sent=self._on_sent,
            name="audiosocket-sender",
        )
        self.clears = 0

    def start(self) -> None:
        """Start the paced sender."""
        self.pacer.start()

    async def play(self, pcm: bytes) -> None:
        """Queue bot audio (LINEAR16 at `sample_rate`; resampled to the line's rate)."""
        if self.closed or not pcm:
            return
        if self.line_rate != self.sample_rate:
            pcm_out = resample_chunk(pcm, self.sample_rate, self.line_rate)
        else:
            pcm_out = pcm
        self.pacer.push(pcm_out)
        self.playout.add(len(pcm) - len(pcm) % g711.SAMPLE_WIDTH)

    async def clear(self) -> None:
        """Barge-in: Asterisk holds nothing, so dropping our queue stops the bot now."""
        self.pacer.drop_queued()
        self.playout.clear()
        self.clears += 1

    async def hangup(self, reason: str) -> None:
        """Play out what is queued (bounded), then send the hang-up message."""
        if self.closed:
            return
        log.info("audiosocket: bot hangs up (%s)", reason)
        await self.pacer.drain(lambda: bool(self.pacer.queue), HANGUP_DRAIN_CAP_S)
        await self.aclose(send_hangup=True)

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """Audio-only transport: events stay server-side."""
        return None

    async def aclose(self, *, send_hangup: bool = False) -> None:
        """Stop sending; with `send_hangup`, tell Asterisk first. Closes the socket."""
        if self.closed:
            return
        await self.pacer.aclose()
        if send_hangup and not self._writer.is_closing():
            with contextlib.suppress(Exception):
                self._writer.write(HANGUP_FRAME)
                await self._writer.drain()
        self._writer.close()

    async def _write(self, frame: bytes) -> None:
        self._writer.write(encode_audio(frame, self.kind))
        await self._writer.drain()

    def _on_sent(self, nbytes: int) -> None:
        # After a clear the played counter must not jump back: AckPlayout keeps
        # `played` monotonic and `_written` only grows.
        self._written += nbytes
        self.playout.ack(g711.pcm_ms(self._written, self.line_rate))


@dataclass
class AudioSocketStats(CallStats):
    """A finished AudioSocket call: its UUID, frames in, DTMF, how it ended."""

    uuid: str | None = None
    frames_in: int = 0
    dtmf: list[str] = field(default_factory=list)
    end: str = ""  # hangup | eof | error | protocol | shutdown | bot | busy | internal


class AudioSocketCall(TelephonyCall):
    """One TCP connection from Asterisk."""

    channel = "audiosocket"
    stats: AudioSocketStats

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: CallHost,
        registry: CallRegistry,
    ) -> None:
        super().__init__(host, AudioSocketStats())
        self.reader = reader
        self.writer = writer
        self.registry = registry
        self.transport: AudioSocketTransport | None = None

    @property
    def label(self) -> str:
        """`audiosocket <uuid>` for logs."""
        return f"audiosocket {self.stats.uuid}"

    async def serve(self) -> AudioSocketStats:
        """Run the connection to its end; a bug on our side ends this call only."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve()
        except ProtocolError as exc:
            self.stats.end = "protocol"
            log.warning("%s: protocol error: %s; closing", self.label, exc)
        except (ConnectionError, OSError) as exc:
            self.stats.end = self.stats.end or "eof"
            log.info("%s: connection lost (%s)", self.label, type(exc).__name__)
        except Exception:
            self.stats.end = "internal"
            log.exception("%s: internal error; closing", self.label)
        finally:
            await self.finish()
        return self.stats

    async def _next_in_time(self, code: str, what: str) -> AudioSocketMessage | None:
        """The next message within `FIRST_FRAME_TIMEOUT_S` (None at end of stream);
        `ProtocolError(code)` when none comes in time."""
        try:
            return await asyncio.wait_for(read_message(self.reader), FIRST_FRAME_TIMEOUT_S)
        except TimeoutError as exc:
            raise ProtocolError(code, f"no {what} message in time") from exc

    async def _serve(self) -> None:
        first = await self._next_in_time("no_uuid", "UUID")
        if first is None:
            self.stats.end = "eof"
            return
        if not isinstance(first, UuidMessage):
            raise ProtocolError("no_uuid", f"first message is {type(first).__name__}, not a UUID")
        call_uuid = first.uuid
        self.stats.uuid = call_uuid
        info = self.registry.pop(call_uuid) or CallInfo(None, None)
        log.info(
            "%s: call from %s to %s",
            self.label,
            mask_number(info.caller_id),
            mask_number(info.called_id),
        )
        if not self.host.has_capacity(channel="audiosocket"):
            log.warning("%s: refusing the call: all slots busy", self.label)
            self.stats.end = "busy"
            self.writer.write(HANGUP_FRAME)
            return
        # The first audio message tells the line's rate (its kind): the session is
        # opened with it. Asterisk streams audio from the start, so this costs <= 20 ms.
        early_dtmf: list[DtmfMessage] = []
        while True:
            msg = await self._next_in_time("no_audio", "audio")
            if msg is None:
                self.stats.end = "eof"
                return
            if isinstance(msg, AudioMessage):
                break
            if isinstance(msg, DtmfMessage):
                early_dtmf.append(msg)
            elif self._ends_call(msg):
                return
        first_audio = msg
        kind = first_audio.kind
        transport = AudioSocketTransport(self.writer, self.host.clock, kind)
        inbound = (
            StreamResampler(transport.line_rate, transport.sample_rate)
            if transport.line_rate != transport.sample_rate
            else None
        )
        if kind != KIND_AUDIO:
            log.info(
                "%s: %d Hz line (type 0x%02x): the call runs at %d Hz",
                self.label,
                transport.line_rate,
                kind,
                transport.sample_rate,
            )
        session = self.open_session(
            transport,
            caller_id=info.caller_id,
            called_id=info.called_id,
            metadata={"uuid": call_uuid},
            script=info.utterances,
            script_id=call_uuid,
        )
        self.transport = transport
        transport.start()
        pending: list[AudioSocketMessage] = [*early_dtmf, first_audio]
        while True:
            msg = pending.pop(0) if pending else await read_message(self.reader)
            if msg is None:
                self.stats.end = self.stats.end or "eof"
                return
            if isinstance(msg, AudioMessage):
                if msg.kind != kind:
                    raise ProtocolError(
                        "kind_changed", f"audio type 0x{msg.kind:02x} in a 0x{kind:02x} call"
                    )
                self.stats.frames_in += 1
                if msg.pcm:
                    pcm = inbound.process(msg.pcm) if inbound is not None else msg.pcm
                    if pcm:
                        session.feed_audio(pcm)
            elif isinstance(msg, DtmfMessage):
                if msg.digit is not None:
                    self.stats.dtmf.append(msg.digit)
                    session.feed_dtmf(msg.digit)
                else:
                    log.warning("%s: ignoring DTMF %r", self.label, msg.raw)
            elif self._ends_call(msg):
                return

    def _ends_call(self, msg: AudioSocketMessage) -> bool:
        """Hang-up or error: record how the call ended (True). A second UUID is a
        protocol error; audio and DTMF do not end the call (False)."""
        if isinstance(msg, HangupMessage):
            self.stats.end = "hangup"
            return True
        if isinstance(msg, ErrorMessage):
            log.warning("%s: Asterisk reports error 0x%02x", self.label, msg.code)
            self.stats.end = "error"
            return True
        if isinstance(msg, UuidMessage):
            raise ProtocolError("unexpected_type", "a second UUID message")
        return False

    async def session_over(self, failed: bool) -> None:
        """The session is over (bot hung up, or failed): make sure Asterisk knows."""
        if self.transport is not None and not self.transport.closed:
            self.stats.end = self.stats.end or "bot"
            await self.transport.aclose(send_hangup=True)

    def abort(self, reason: str = "shutdown") -> None:
        """Server shutdown: end the session; closing the socket ends the read loop."""
        self.stats.end = self.stats.end or reason
        if self.session is not None:
            self.session.end(reason)
        self.writer.close()

    async def close_connection(self) -> None:
        """Close the TCP connection and wait for it (errors ignored)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        log.info("%s: closed (%s)", self.label, self.stats.end)


class AudioSocketServer(asyncio.AbstractServer):
    """The listening server plus its live calls, so close() also ends the calls."""

    def __init__(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self.calls: set[AudioSocketCall] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_call: Callable[[AudioSocketCall], None] | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._server.sockets) if self._server is not None else ()

    def close(self) -> None:
        """Stop listening and abort every live call."""
        if self._server is not None:
            self._server.close()
        for call in list(self.calls):
            call.abort("shutdown")

    async def wait_closed(self) -> None:
        """Wait for every call's task, then for the listener."""
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
        """The event loop of the listener."""
        assert self._server is not None
        return self._server.get_loop()

    def is_serving(self) -> bool:
        """True while accepting connections."""
        return self._server is not None and self._server.is_serving()

    async def start_serving(self) -> None:
        """Start accepting connections."""
        assert self._server is not None
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        """Accept connections until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        return int(self.sockets[0].getsockname()[1])


async def start_audiosocket(
    host: CallHost,
    registry: CallRegistry,
    bind_host: str,
    port: int,
    *,
    reuse_port: bool = False,
) -> AudioSocketServer:
    """Listen for Asterisk on `bind_host:port` (0: a free port); caller ids come from
    `registry` (the one the register route was mounted with)."""
    server = AudioSocketServer()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call = AudioSocketCall(reader, writer, host, registry)
        server.calls.add(call)
        if server.on_call is not None:
            server.on_call(call)
        task = asyncio.current_task()
        if task is not None:
            server._tasks.add(task)
        try:
            await call.serve()
        finally:
            server.calls.discard(call)
            if task is not None:
                server._tasks.discard(task)

    # reuse_port: `serve --workers N` binds the same port in every worker.
    server._server = await asyncio.start_server(on_connect, bind_host, port, reuse_port=reuse_port)
    return server
