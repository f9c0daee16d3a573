"""Shared machinery of the WebSocket streaming recognizers (ElevenLabs, Deepgram, Soniox).

One stream is one WebSocket connection. When it ends in a way a new connection fixes
(a drop, a vendor session limit, an idle close), the iterator raises a typed retriable
`ProviderError` (`Reconnect` for the limits nobody is to blame for) and the engine's
recognizer (`voicebot/engine/recognition.py`) opens a new stream and replays the
caller's audio from its own buffer, under its one `RecoveryPolicy`: reconnect, replay,
backoff and keep-alive are not done here. Each subclass only speaks its protocol: how
to connect, how to frame audio, how to read a message.

Stream time is the audio handed to `send_audio`/`send_silence` (plus any silence a
subclass injects, e.g. ElevenLabs' commit padding), in ms since the stream opened; with
one connection per stream it is also the connection's own timeline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voicebot.providers.base import (
    AuthError,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
    StreamLimitError,
)
from voicebot.stt_options import StreamPolicy
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_END = object()


class Reconnect(StreamLimitError):
    """The connection ended in a way that needs a new stream but is nobody's failure (a
    vendor session time limit, an idle close): the engine reopens without counting it
    as a loss, like SpeechKit's per-stream cap."""

    def __init__(self, message: str, *, code: str, provider: str) -> None:
        super().__init__(message, code=code, retriable=True, provider=provider)


def header_pairs(metadata: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """Request metadata as HTTP headers. HTTP header values are Latin-1, so `-bin` keys
    carry base64 of their UTF-8 value, exactly as gRPC sends binary metadata."""
    out: list[tuple[str, str]] = []
    for key, value in metadata:
        if key.endswith("-bin"):
            value = base64.b64encode(value.encode("utf-8")).decode("ascii")
        out.append((key, value))
    return out


def handshake_error(exc: Exception, provider: str) -> ProviderError:
    """Map a refused upgrade / unreachable server onto the error classes."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        reason = exc.response.headers.get("dg-error", "") or f"HTTP {status}"
        msg = f"{provider}: handshake refused: {reason}"
        if status in (401, 403):
            return AuthError(msg, code=f"HTTP_{status}", provider=provider)
        if status == 402:
            return RateLimitError(msg, code="HTTP_402", retriable=False, provider=provider)
        if status == 429:
            return RateLimitError(msg, code="HTTP_429", retriable=True, provider=provider)
        return ProviderError(msg, code=f"HTTP_{status}", retriable=status >= 500, provider=provider)
    if isinstance(exc, TimeoutError):
        return ProviderError(
            f"{provider}: connect timed out", code="TIMEOUT", retriable=True, provider=provider
        )
    if isinstance(exc, (OSError, InvalidHandshake, ConnectionClosed)):
        return ProviderError(
            f"{provider}: cannot connect: {type(exc).__name__}",
            code="UNAVAILABLE",
            retriable=True,
            provider=provider,
        )
    return ProviderError(f"{provider}: {exc!r}", code="INTERNAL", retriable=True, provider=provider)


class WsRecognitionStream:
    """One recognition stream over one WebSocket connection.

    `send_audio` never blocks on the network: audio goes to a queue that a single
    writer task drains onto the socket. If the socket stalls, the queue is capped at
    `policy.max_pending_s` (the oldest unsent audio is dropped, logged once).
    """

    provider = ""
    max_chunk_ms = 250

    def __init__(self, options: RecognitionOptions, policy: StreamPolicy) -> None:
        self.options = options
        self.policy = policy
        self.rate = options.sample_rate
        self._buf = bytearray()  # audio not sent yet
        self._buf_start = 0  # absolute byte offset of _buf[0]
        self._total = 0  # absolute bytes appended
        self._conn_sent = 0  # absolute offset sent on the connection
        self._covered = 0  # absolute offset a final covers (see `trim_to_ms`)
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._finishing = False
        self._end_sent = False
        self._closed = False
        self._final_index = 0
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self.connections = 0  # 1 once connected (for tests and logs)
        self.dropped_ms = 0  # unsent audio lost to the pending cap

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Connect and run (one task per stream)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def send_audio(self, pcm: bytes) -> None:
        """Queue LINEAR16 audio; never waits on the network."""
        if self._finishing or self._closed or not pcm:
            return
        self._append(pcm)

    async def send_silence(self, duration_ms: int) -> None:
        """Silence is audio too: zeros, so the vendor's timeline advances."""
        n = self.bytes_for_ms(duration_ms)
        if n:
            await self.send_audio(bytes(n))

    async def finish(self) -> None:
        """No more audio: ask for the last results; iteration then ends by itself."""
        self._finishing = True
        self._wake.set()

    async def aclose(self) -> None:
        """Cancel at once; iteration ends."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._task)
        self._events.put_nowait(_END)

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RecognitionEvent]:
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)
                return
            if isinstance(item, BaseException):
                self._events.put_nowait(_END)
                raise item
            yield item

    # ------------------------------------------------------------------ for subclasses

    def bytes_for_ms(self, ms: float) -> int:
        """LINEAR16 bytes in `ms` of audio at the stream's rate (whole samples)."""
        return int(ms * self.rate / 1000) * 2

    def ms_for_bytes(self, n: int) -> int:
        """Whole ms of audio in `n` LINEAR16 bytes."""
        return n * 1000 // (2 * self.rate)

    @property
    def sent_ms(self) -> int:
        """Stream time of the audio sent so far."""
        return self.ms_for_bytes(self._conn_sent)

    def stream_ms(self, conn_ms: float) -> int:
        """A time on the connection's timeline, on the stream's clock (ms, rounded)."""
        return round(conn_ms)

    def emit(self, event: RecognitionEvent) -> None:
        """Hand one event to the iterator."""
        self._events.put_nowait(event)

    def next_final_index(self) -> int:
        """Client-side final index: increases over the whole stream."""
        i = self._final_index
        self._final_index += 1
        return i

    def trim_to_ms(self, stream_ms: int) -> None:
        """A final covers the audio before `stream_ms`."""
        self._covered = max(self._covered, min(self.bytes_for_ms(stream_ms), self._conn_sent))

    def inject_silence(self, duration_ms: int) -> None:
        """Silence that becomes part of the stream (e.g. commit padding)."""
        self._append(bytes(self.bytes_for_ms(duration_ms)))

    # Hooks ------------------------------------------------------------------

    async def connect(self) -> ClientConnection:
        """Open a socket and return once the provider is ready for audio."""
        raise NotImplementedError

    async def send_frame(self, ws: ClientConnection, pcm: bytes) -> None:
        """Send one chunk of audio in the vendor's framing."""
        raise NotImplementedError

    async def send_end(self, ws: ClientConnection) -> None:
        """All audio is sent: ask for the last results and a server-side close."""
        raise NotImplementedError

    def end_done(self) -> bool:
        """After `send_end`: True when nothing more is coming (close at once)."""
        return False

    def on_message(self, msg: str | bytes) -> bool:
        """Handle one server message; True when the stream finished gracefully.
        Raise ProviderError for an error message."""
        raise NotImplementedError

    def close_error(self, code: int | None, reason: str) -> ProviderError | None:
        """The server closed the socket unasked. None = the stream is done."""
        return ProviderError(
            f"{self.provider}: connection closed ({code} {reason})".strip(),
            code=f"CLOSED_{code}",
            retriable=True,
            provider=self.provider,
        )

    def on_end(self) -> None:
        """The stream is over: emit anything still pending (finals without an end of utterance)."""

    # ------------------------------------------------------------------ internals

    def _append(self, pcm: bytes) -> None:
        self._buf += pcm
        self._total += len(pcm)
        excess = len(self._buf) - self.bytes_for_ms(self.policy.max_pending_s * 1000)
        if excess > 0:
            if not self.dropped_ms:  # once per stream, not once per frame
                log.warning("%s: the socket is not keeping up; dropping audio", self.provider)
            self.dropped_ms += self.ms_for_bytes(excess)
            del self._buf[:excess]
            self._buf_start += excess
            self._conn_sent = max(self._conn_sent, self._buf_start)
        self._wake.set()

    async def _run(self) -> None:
        try:
            error = await self._connection()
            if error is not None:
                raise error
            self.on_end()
            self._events.put_nowait(_END)
        except ProviderError as e:
            self._events.put_nowait(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must not hang the caller's iteration
            log.exception("%s: stream failed", self.provider)
            self._events.put_nowait(
                ProviderError(
                    f"{self.provider}: {e!r}",
                    code="INTERNAL",
                    retriable=True,
                    provider=self.provider,
                )
            )

    async def _connection(self) -> ProviderError | None:
        try:
            ws = await asyncio.wait_for(self.connect(), self.policy.open_timeout_s)
        except Exception as e:
            return handshake_error(e, self.provider)
        self._ws = ws
        self.connections += 1
        writer = asyncio.get_running_loop().create_task(self._writer(ws))
        try:
            return await self._reader(ws)
        finally:
            await cancel_and_wait(writer)
            try:
                await asyncio.wait_for(ws.close(), 1.0)
            except Exception:  # closing a dead socket: nothing left to do
                log.debug("%s: close failed", self.provider)
            self._ws = None

    async def _reader(self, ws: ClientConnection) -> ProviderError | None:
        try:
            async for msg in ws:
                if self.on_message(msg):
                    return None
        except ProviderError as e:
            return e
        except ConnectionClosed:
            pass
        if self._end_sent:
            return None
        return self.close_error(ws.close_code, ws.close_reason or "")

    async def _writer(self, ws: ClientConnection) -> None:
        max_chunk = self.bytes_for_ms(self.max_chunk_ms)
        try:
            while True:
                if self._buf:
                    chunk = bytes(self._buf[:max_chunk])
                    del self._buf[: len(chunk)]
                    self._buf_start += len(chunk)
                    self._conn_sent = self._buf_start
                    await self.send_frame(ws, chunk)
                    continue
                if self._finishing:
                    await self.send_end(ws)
                    self._end_sent = True
                    if not self.end_done():
                        # The vendor's last results: a protocol wait, bounded.
                        await asyncio.sleep(self.policy.finish_timeout_s)
                    await ws.close()
                    return
                self._wake.clear()
                await self._wake.wait()
        except ConnectionClosed:
            return
