"""Shared machinery of the WebSocket streaming recognizers (ElevenLabs, Deepgram, Soniox).

The three vendors differ in framing and events but share one failure model: the socket
can drop or idle-close at any moment, there is no resume, and every new connection's
timeline restarts at 0. So one class keeps the caller's audio until a final covers it,
replays it onto a fresh socket after a loss (no speech is lost), maps per-connection
times back onto the stream's own clock, and keeps the socket alive; each subclass only
speaks its protocol: how to connect, how to frame audio, how to read a message.

Stream time is the audio handed to `send_audio`/`send_silence` (plus any silence a
subclass injects as keep-alive), in ms since the stream opened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voicebot.providers.base import (
    AuthError,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
)

log = logging.getLogger(__name__)

_END = object()


@dataclass
class StreamPolicy:
    """Connection behaviour common to all WebSocket providers."""

    max_reconnects: int = 3  # consecutive failed connections before the stream gives up
    backoff_s: float = 0.2  # doubled per consecutive failure, capped at backoff_max_s
    backoff_max_s: float = 2.0
    replay_max_s: float = 30.0  # caller audio kept for replay after a lost connection
    open_timeout_s: float = 5.0  # handshake + readiness
    finish_timeout_s: float = 5.0  # wait for the last results after the graceful end
    keepalive_s: float = 4.0  # keep-alive after this long with nothing sent


class Reconnect(ProviderError):
    """The connection ended in a way that needs a new socket but is nobody's failure
    (a session time limit, an idle close). `lazy`: wait for new audio first."""

    def __init__(self, message: str, *, code: str, provider: str, lazy: bool = False) -> None:
        super().__init__(message, code=code, retriable=True, provider=provider)
        self.lazy = lazy


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
    """One recognition stream over a sequence of WebSocket connections.

    `send_audio` never blocks on the network: audio goes to a buffer that a single
    writer task drains onto the current socket, and it stays there until a final covers
    it (`trim_to_ms`), so a lost connection is replayed from the first unfinalized byte.
    """

    provider = ""
    max_chunk_ms = 250

    def __init__(self, options: RecognitionOptions, policy: StreamPolicy) -> None:
        self.options = options
        self.policy = policy
        self.rate = options.sample_rate
        self._buf = bytearray()
        self._buf_start = 0  # absolute byte offset of _buf[0]
        self._total = 0  # absolute bytes appended
        self._conn_base = 0  # absolute offset where the current connection's time 0 is
        self._conn_sent = 0  # absolute offset sent on the current connection
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._finishing = False
        self._end_sent = False
        self._closed = False
        self._progress = False
        self._final_index = 0
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self.connections = 0  # sockets opened so far (for tests and logs)
        self.dropped_ms = 0  # audio lost to the replay cap

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def send_audio(self, pcm: bytes) -> None:
        if self._finishing or self._closed or not pcm:
            return
        self._append(pcm)

    async def send_silence(self, duration_ms: int) -> None:
        n = self.bytes_for_ms(duration_ms)
        if n:
            await self.send_audio(bytes(n))

    async def finish(self) -> None:
        self._finishing = True
        self._wake.set()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
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
        return int(ms * self.rate / 1000) * 2

    def ms_for_bytes(self, n: int) -> int:
        return n * 1000 // (2 * self.rate)

    @property
    def sent_ms(self) -> int:
        """Stream time of the audio sent on the current connection."""
        return self.ms_for_bytes(self._conn_sent)

    def stream_ms(self, conn_ms: float) -> int:
        """A time on the current connection's timeline, on the stream's clock."""
        return self.ms_for_bytes(self._conn_base) + round(conn_ms)

    def conn_audio_ms(self) -> int:
        """Audio sent on the current connection so far."""
        return self.ms_for_bytes(self._conn_sent - self._conn_base)

    def emit(self, event: RecognitionEvent) -> None:
        self._events.put_nowait(event)

    def mark_progress(self) -> None:
        """The current connection delivered results: its failure count starts over."""
        self._progress = True

    def next_final_index(self) -> int:
        i = self._final_index
        self._final_index += 1
        return i

    def trim_to_ms(self, stream_ms: int) -> None:
        """Audio before `stream_ms` is covered by a final: no need to replay it."""
        pos = min(self.bytes_for_ms(stream_ms), self._conn_sent)
        if pos > self._buf_start:
            del self._buf[: pos - self._buf_start]
            self._buf_start = pos

    def inject_silence(self, duration_ms: int) -> None:
        """Silence that becomes part of the stream (keep-alive for providers without one)."""
        self._append(bytes(self.bytes_for_ms(duration_ms)))

    # Hooks ------------------------------------------------------------------

    async def connect(self) -> ClientConnection:
        """Open a socket and return once the provider is ready for audio."""
        raise NotImplementedError

    async def send_frame(self, ws: ClientConnection, pcm: bytes) -> None:
        raise NotImplementedError

    async def send_keepalive(self, ws: ClientConnection) -> None:
        raise NotImplementedError

    async def send_end(self, ws: ClientConnection) -> None:
        """All audio is sent: ask for the last results and a server-side close."""
        raise NotImplementedError

    def end_done(self) -> bool:
        """After `send_end`: True when nothing more is coming (close at once)."""
        return False

    def on_connection(self) -> None:
        """Reset per-connection protocol state."""

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
        cap = self.bytes_for_ms(self.policy.replay_max_s * 1000)
        excess = len(self._buf) - cap
        if excess > 0:
            lost = max(0, min(self._buf_start + excess, self._total) - self._conn_sent)
            if lost:
                if not self.dropped_ms:  # once per stream, not once per frame
                    log.warning("%s: replay buffer full; dropping the oldest audio", self.provider)
                self.dropped_ms += self.ms_for_bytes(lost)
            del self._buf[:excess]
            self._buf_start += excess
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        try:
            while not self._closed:
                error = await self._one_connection()
                if error is None:
                    break
                if not error.retriable:
                    raise error
                if isinstance(error, Reconnect):
                    log.info("%s: reconnecting (%s)", self.provider, error.code)
                    if error.lazy:
                        mark = self._total
                        while self._total == mark and not self._finishing:
                            self._wake.clear()
                            await self._wake.wait()
                        if self._total == mark:
                            break  # finishing with nothing new: nothing to recognize
                    failures = 0
                    continue
                failures = 0 if self._progress else failures + 1
                if failures > self.policy.max_reconnects:
                    raise ProviderError(
                        f"{error} (gave up after {failures} attempts)",
                        code=error.code,
                        retriable=True,
                        provider=self.provider,
                    )
                delay = min(
                    self.policy.backoff_s * 2 ** max(0, failures - 1), self.policy.backoff_max_s
                )
                log.info(
                    "%s: connection lost (%s), retry in %.2fs", self.provider, error.code, delay
                )
                await asyncio.sleep(delay)
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

    async def _one_connection(self) -> ProviderError | None:
        self._progress = False
        self._end_sent = False
        try:
            ws = await asyncio.wait_for(self.connect(), self.policy.open_timeout_s)
        except Exception as e:
            return handshake_error(e, self.provider)
        self._ws = ws
        self.connections += 1
        self._conn_base = self._buf_start
        self._conn_sent = self._buf_start
        self.on_connection()
        writer = asyncio.get_running_loop().create_task(self._writer(ws))
        try:
            return await self._reader(ws)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
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
        loop = asyncio.get_running_loop()
        max_chunk = self.bytes_for_ms(self.max_chunk_ms)
        last = loop.time()
        try:
            while True:
                if self._conn_sent < self._buf_start:  # the replay cap dropped unsent audio
                    self._conn_sent = self._buf_start
                if self._conn_sent < self._total:
                    start = self._conn_sent - self._buf_start
                    n = min(self._total - self._conn_sent, max_chunk)
                    chunk = bytes(self._buf[start : start + n])
                    self._conn_sent += n
                    await self.send_frame(ws, chunk)
                    last = loop.time()
                    continue
                if self._finishing:
                    await self.send_end(ws)
                    self._end_sent = True
                    if not self.end_done():
                        await asyncio.sleep(self.policy.finish_timeout_s)
                    await ws.close()
                    return
                self._wake.clear()
                wait = self.policy.keepalive_s - (loop.time() - last)
                if wait <= 0:
                    await self.send_keepalive(ws)
                    last = loop.time()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        except ConnectionClosed:
            return
