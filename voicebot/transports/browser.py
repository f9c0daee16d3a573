"""The browser call: the `/ws` WebSocket codec of the voice-chat page.

One WebSocket carries at most one call. The page sends `start`, then Int16 LE PCM audio
as binary frames and/or typed `text`, and acknowledges how much bot audio it has really
played (`playback`), so the engine's echo gate and latency figures follow real playout.
The server answers with `ready`, the session's events as JSON, and bot audio as binary
frames at the rate the page asked for. The wire format is documented in
docs/websocket-protocol.md; keep the two in step.

Bad input never kills the process and never touches other calls: recoverable mistakes
get an `error` event and the call goes on; the rest get a close with a documented code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from voicebot.ops.limits import TokenBucket
from voicebot.tasks import cancel_and_wait
from voicebot.transports.base import AckPlayout, end_session, receive_before
from voicebot.transports.errors import ProtocolError
from voicebot.transports.host import LiveCall

log = logging.getLogger(__name__)

# Close codes (docs/websocket-protocol.md, "Closing").
CLOSE_NORMAL = 1000  # call over (`done` was sent)
CLOSE_GOING_AWAY = 1001  # server shutting down
CLOSE_POLICY = 1008  # too many protocol errors
CLOSE_TOO_BIG = 1009  # a message far above the limit (closed by the WebSocket layer)
CLOSE_INTERNAL = 1011  # the call failed on our side
CLOSE_BUSY = 1013  # max_sessions reached: try again later
CLOSE_TIME_LIMIT = 4001  # server.max_session_s reached
START_TIMEOUT_S = 15.0  # a connection must send `start` within this

MAX_PROTOCOL_ERRORS = 50  # a client that keeps sending garbage is cut off
MAX_TEXT_CHARS = 2000
MAX_OUT_FRAME_MS = 200  # bot audio is split into binary frames of at most this much
ACK_TOLERANCE_MS = 1.0  # an ack this close to everything sent means everything played

# The call this codec drives: the host's `LiveCall`, nothing more.
BrowserSession = LiveCall


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What the page asked for in `start`."""

    sample_rate: int
    language: str | None = None
    # TEST/BENCH ONLY (`emulator_hooks`): what the emulator will "recognize", in order.
    emulator_utterances: tuple[str, ...] | None = None
    mode: str | None = None  # one of `BrowserLimits.modes` (None: the server's default)


SessionFactory = Callable[["BrowserTransport", StartRequest], BrowserSession]


@dataclass(slots=True)
class BrowserLimits:
    """The server.* settings this codec enforces."""

    max_message_bytes: int = 65536
    max_session_s: float = 1800.0
    allowed_sample_rates: tuple[int, ...] = (8000, 16000, 48000)
    barge_in: bool = False
    offline: bool = False
    modes: tuple[str, ...] = ()  # dialogues a caller may pick with `start.mode`
    default_mode: str | None = None
    extra_capabilities: Mapping[str, Any] = field(default_factory=dict)
    messages_per_s: float = 0.0  # per connection, burst twice that; 0: no limit

    @property
    def hard_message_bytes(self) -> int:
        """Above this the WebSocket layer itself closes with 1009 (nothing is buffered)."""
        return max(4 * self.max_message_bytes, 1 << 20)


class BrowserTransport:
    """`CallTransport` over the page's WebSocket; playout comes from the page's acks."""

    def __init__(self, ws: web.WebSocketResponse, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.playout = AckPlayout(sample_rate)
        self._ws = ws
        self._send_lock = asyncio.Lock()  # frames of one message must not interleave
        self._max_frame = int(sample_rate * 2 * MAX_OUT_FRAME_MS / 1000)
        self.hangup_reason: str | None = None
        self.done_sent = False

    @property
    def closed(self) -> bool:
        """True once the WebSocket is closing or closed."""
        return self._ws.closed

    async def play(self, pcm: bytes) -> None:
        """Queue bot audio: binary frames of at most 200 ms, counted in the playout."""
        if len(pcm) % 2:
            pcm = pcm[:-1]  # a torn sample would shift every later one into noise
        for i in range(0, len(pcm), self._max_frame):
            chunk = pcm[i : i + self._max_frame]
            if await self._send(chunk):
                self.playout.add(len(chunk))

    async def clear(self) -> None:
        """Drop unplayed audio (barge-in) and tell the page to stop playback."""
        self.playout.clear()
        await self.send_json({"type": "clear"})

    async def hangup(self, reason: str) -> None:
        """The bot ends the call: the session's run() returns after hanging up, and the
        call then closes with 1000."""
        self.hangup_reason = reason

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """A session event as JSON text (dropped once the socket is closed)."""
        if event.get("type") == "done":
            self.done_sent = True
        await self.send_json(event)

    def ack(self, played_ms: float) -> None:
        """The page's `playback` report: `played_ms` of bot audio played."""
        queued = self.playout.queued_ms()
        if queued - ACK_TOLERANCE_MS <= played_ms < queued:
            played_ms = queued  # a client rounding to whole ms must not leave us "playing"
        self.playout.ack(played_ms)

    async def send_json(self, message: Mapping[str, Any]) -> bool:
        """Send one JSON message; False when the socket is gone."""
        return await self._send(json.dumps(message, ensure_ascii=False, default=str))

    async def _send(self, data: str | bytes) -> bool:
        """Send unless the socket is gone: a vanished page must not break the call flow."""
        async with self._send_lock:
            if self._ws.closed:
                return False
            try:
                if isinstance(data, bytes):
                    await self._ws.send_bytes(data)
                else:
                    await self._ws.send_str(data)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("browser send failed: %s", exc)
                return False
            return True


class BrowserCall:
    """One `/ws` connection: parses client messages and runs at most one session."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        new_session: SessionFactory,
        limits: BrowserLimits,
    ) -> None:
        self.ws = ws
        self._new_session = new_session
        self._limits = limits
        rate = limits.messages_per_s
        # A flood of messages (audio or JSON) from one page must not starve the loop.
        self._bucket = TokenBucket(rate, 2 * rate, time.monotonic) if rate > 0 else None
        self.transport: BrowserTransport | None = None
        self.session: BrowserSession | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._errors = 0
        self._close_code = CLOSE_NORMAL
        self._close_reason = b""
        self._interrupt = asyncio.Event()  # time limit or server shutdown
        self.finished = asyncio.Event()

    @property
    def active(self) -> bool:
        """A session is running on this connection."""
        return self._run_task is not None and not self._run_task.done()

    # --- the read loop -------------------------------------------------------------

    async def serve(self) -> None:
        """Read until the page leaves, the call ends, or a limit is hit; then clean up."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._limits.max_session_s, self._on_time_limit)
        reason = "caller_hangup"
        try:
            reason = await self._read_loop()
        finally:
            timer.cancel()
            try:
                if self._close_code == CLOSE_TIME_LIMIT:
                    await self._send_error(
                        "session_time_limit",
                        f"The call reached its time limit of {self._limits.max_session_s:g} s.",
                    )
                    reason = "time_limit"
                elif self._close_code == CLOSE_GOING_AWAY:
                    reason = "server_shutdown"
                await self._finish_session(reason)
                if not self.ws.closed:
                    await self.ws.close(code=self._close_code, message=self._close_reason)
            finally:
                self.finished.set()

    async def _read_loop(self) -> str:
        """Handle messages until the call should end; returns the reason to end it.

        One reader task per connection, never one per frame: the loop below only
        waits for the reader to finish or for an interrupt (time limit, shutdown, or
        the session ending on its own, which sets the same event).
        """
        reader = asyncio.ensure_future(self._read_messages())
        interrupt = asyncio.ensure_future(self._interrupt.wait())
        try:
            await asyncio.wait({reader, interrupt}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                return reader.result()
            # The session finished (the bot hung up, or it failed), or a limit hit.
            await cancel_and_wait(reader)
            return "bot_hangup"
        finally:
            interrupt.cancel()

    async def _read_messages(self) -> str:
        start_deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not self.ws.closed:
            msg = await receive_before(self.ws, None if self.session else start_deadline)
            if msg is None:
                await self._send_error("no_start", "No `start` in time; closing.")
                self._close_code, self._close_reason = CLOSE_POLICY, b"no start"
                return "no_start"
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return "caller_hangup"
            if msg.type == WSMsgType.ERROR:
                # aiohttp has already closed (1009 for a message above the hard limit).
                log.info("browser ws error: %s", msg.data)
                return "caller_hangup"
            if self._bucket is not None and not self._bucket.take():
                await self._send_error("rate_limited", "Too many messages per second; closing.")
                self._close_code, self._close_reason = CLOSE_POLICY, b"rate limited"
                return "rate_limited"
            try:
                if msg.type == WSMsgType.BINARY:
                    self._on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT and await self._on_text_message(msg.data):
                    return "caller_hangup"
            except ProtocolError as exc:
                if await self._protocol_error(exc):
                    return "protocol_error"
            except Exception:
                # A bug on our side ends this call cleanly (1011) and no other.
                log.exception("browser call: internal error")
                await self._send_error("internal", "Internal server error; the call ends.")
                self._close_code, self._close_reason = CLOSE_INTERNAL, b"internal error"
                return "internal_error"
        return "caller_hangup"

    async def _protocol_error(self, exc: ProtocolError) -> bool:
        """Report a client mistake; True when there have been too many to go on."""
        self._errors += 1
        await self._send_error(exc.code, exc.message)
        if self._errors >= MAX_PROTOCOL_ERRORS:
            await self._send_error("too_many_errors", "Too many invalid messages; closing.")
            self._close_code = CLOSE_POLICY
            self._close_reason = b"too many errors"
            return True
        return False

    async def _send_error(self, code: str, message: str) -> None:
        payload = {"type": "error", "code": code, "message": message}
        if self.transport is not None:
            await self.transport.send_json(payload)
        elif not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str(json.dumps(payload, ensure_ascii=False))

    # --- client messages -----------------------------------------------------------

    def _check_size(self, size: int) -> None:
        if size > self._limits.max_message_bytes:
            raise ProtocolError(
                "message_too_large",
                f"Message of {size} bytes exceeds the limit of "
                f"{self._limits.max_message_bytes} bytes; it was dropped.",
            )

    def _on_audio(self, data: bytes) -> None:
        self._check_size(len(data))
        if self.session is None or self.transport is None:
            raise ProtocolError("not_started", "Audio before `start`; send `start` first.")
        if len(data) % 2:
            raise ProtocolError(
                "bad_audio", "Audio frames are Int16 PCM: the byte length must be even."
            )
        if data:
            self.session.feed_audio(data)

    async def _on_text_message(self, raw: str) -> bool:
        """Handle one JSON message; True when the connection should end."""
        self._check_size(len(raw.encode("utf-8")))
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):
            raise ProtocolError("bad_json", "The message is not valid JSON.") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ProtocolError("bad_message", 'A message must be a JSON object with a "type".')
        kind = message["type"]
        if kind == "start":
            await self._on_start(message)
        elif kind == "text":
            self._on_typed_text(message)
        elif kind == "playback":
            self._on_playback(message)
        elif kind == "dtmf":
            self._on_dtmf(message)
        elif kind == "stop":
            return await self._on_stop()
        else:
            raise ProtocolError("unknown_type", f"Unknown message type {kind[:40]!r}.")
        return False

    async def _on_start(self, message: Mapping[str, Any]) -> None:
        if self.session is not None:
            raise ProtocolError("already_started", "The call has already started.")
        rate = message.get("sample_rate")
        allowed = self._limits.allowed_sample_rates
        if isinstance(rate, bool) or not isinstance(rate, int) or rate not in allowed:
            raise ProtocolError(
                "unsupported_sample_rate",
                f"sample_rate must be one of {', '.join(map(str, allowed))}.",
            )
        language = message.get("language")
        if language is not None and not _is_language_tag(language):
            raise ProtocolError("bad_message", "language must be a tag such as ru-RU.")
        utterances = self._emulator_utterances(message)
        mode = message.get("mode")
        if mode is not None and (not isinstance(mode, str) or mode not in self._limits.modes):
            offered = ", ".join(self._limits.modes) or "none"
            raise ProtocolError("unknown_mode", f"mode must be one of: {offered}.")
        self.transport = BrowserTransport(self.ws, rate)
        try:
            self.session = self._new_session(
                self.transport, StartRequest(rate, language, utterances, mode)
            )
        except Exception:
            log.exception("could not start a browser session")
            self.transport = None
            raise ProtocolError(
                "internal_error", "The call could not be started; try again."
            ) from None
        log.info("browser call %s started at %d Hz", self.session.session_id, rate)
        await self.transport.send_json(
            {
                "type": "ready",
                "session_id": self.session.session_id,
                "offline": self._limits.offline,
                "mode": mode or self._limits.default_mode,
                "capabilities": self._capabilities(rate),
            }
        )
        # `ready` is on the wire before the session can say anything (its greeting).
        self._run_task = asyncio.create_task(self._run_session())
        self._run_task.add_done_callback(lambda _t: self._interrupt.set())

    def _emulator_utterances(self, message: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The caller's transcript script for the emulator (tests, bench). The host
        passes it on only with emulator hooks on, so production never uses it."""
        raw = message.get("emulator_utterances")
        if raw is None:
            return None
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ProtocolError("bad_message", "emulator_utterances must be a list of strings.")
        return tuple(raw)

    def _capabilities(self, rate: int) -> dict[str, Any]:
        pcm = {"encoding": "pcm_s16le", "sample_rate": rate, "channels": 1}
        return {
            "audio_in": pcm,
            "audio_out": pcm,
            "text": True,
            "dtmf": True,
            "barge_in": self._limits.barge_in,
            "modes": list(self._limits.modes),
            "sample_rates": list(self._limits.allowed_sample_rates),
            "max_message_bytes": self._limits.max_message_bytes,
            "max_session_s": self._limits.max_session_s,
            **self._limits.extra_capabilities,
        }

    def _require_session(self, what: str) -> BrowserSession:
        if self.session is None:
            raise ProtocolError("not_started", f"{what} before `start`; send `start` first.")
        return self.session

    def _on_typed_text(self, message: Mapping[str, Any]) -> None:
        session = self._require_session("Text")
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("bad_message", "text must be a non-empty string.")
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError("bad_message", f"text is longer than {MAX_TEXT_CHARS} characters.")
        session.feed_text(text.strip())

    def _on_playback(self, message: Mapping[str, Any]) -> None:
        self._require_session("playback")
        played = message.get("played_ms")
        if (
            isinstance(played, bool)
            or not isinstance(played, int | float)
            or not math.isfinite(played)
            or played < 0
        ):
            raise ProtocolError("bad_message", "played_ms must be a non-negative number.")
        assert self.transport is not None
        self.transport.ack(float(played))

    def _on_dtmf(self, message: Mapping[str, Any]) -> None:
        session = self._require_session("dtmf")
        digit = message.get("digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ProtocolError("bad_message", "digit must be one of 0-9, *, #, A-D.")
        session.feed_dtmf(digit)

    async def _on_stop(self) -> bool:
        if self.session is None:
            self._close_code = CLOSE_NORMAL
            return True
        await self._finish_session("caller_hangup")
        return True

    # --- session lifecycle ---------------------------------------------------------

    async def _run_session(self) -> None:
        assert self.session is not None and self.transport is not None
        summary: Mapping[str, Any] = {}
        try:
            summary = await self.session.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("browser call %s failed", self.session.session_id)
            self._close_code = CLOSE_INTERNAL
            await self.transport.send_json(
                {"type": "error", "code": "internal_error", "message": "The call failed."}
            )
        if not self.transport.done_sent:
            await self.transport.send_event({"type": "done", "summary": dict(summary or {})})

    async def _finish_session(self, reason: str) -> None:
        """End the session (if running) and wait for `run()` to return, then for `done`."""
        if self.session is None or self._run_task is None:
            return
        await end_session(
            self.session, self._run_task, reason, f"browser call {self.session.session_id}"
        )

    def _on_time_limit(self) -> None:
        log.info("browser call reached max_session_s")
        self._close_code, self._close_reason = CLOSE_TIME_LIMIT, b"session time limit"
        self._interrupt.set()

    async def shutdown(self) -> None:
        """Server shutdown: end the call, tell the page to come back later, wait for it."""
        self._close_code, self._close_reason = CLOSE_GOING_AWAY, b"server shutting down"
        self._interrupt.set()
        await self.finished.wait()


def _is_language_tag(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 2 <= len(value) <= 16
        and all(part.isalnum() for part in value.split("-"))
    )


async def refuse_busy(ws: web.WebSocketResponse, max_sessions: int) -> None:
    """Tell a page over the session limit why, then close with 1013 (try again later)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(
            json.dumps(
                {
                    "type": "error",
                    "code": "server_busy",
                    "message": f"All {max_sessions} call slots are busy; try again shortly.",
                }
            )
        )
    await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"server busy")
