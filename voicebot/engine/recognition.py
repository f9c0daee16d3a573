"""One continuous recognition stream for the whole call, whatever happens underneath.

The call sees a single endless stream. Underneath, physical streams are rotated before
SpeechKit's 5-minute cap (at a pause between utterances) and re-opened after a failure
as `recovery.py` decides (retry with backoff, fail over to the next provider, or give
up). This class is the only owner of STT recovery: vendor streams are single
connections, and every wait goes through the call's injected clock. Caller audio is
kept in a ring buffer indexed by call audio time; a new stream is fed everything after
the last end of utterance the old one delivered, so no caller speech is lost and no
words are doubled. When no caller audio flows, silence keeps the stream from the
provider's inactivity abort (SpeechKit's is 5 s).

Audio is batched before it goes to the provider: recognition loses nothing, and each
gRPC write costs the same whatever its size (~40 µs of the server's event loop plus a
completion on gRPC's poller, measured with py-spy at 100 Voximplant calls), so 20 ms
writes would cost fivefold. The batch follows what the audio can change:
- a quiet line with nobody speaking (most of a call: the bot talks, or nobody does) goes
  out in `IDLE_BATCH_MS` batches — nothing there can end or start an utterance late;
- the first loud frame after that flushes the batch at once (the caller's onset reaches
  the recognizer without waiting), and for `VOICE_HOLD_MS` after a loud frame, or while
  an utterance is open, audio goes in `engine.stt_batch_ms` batches (default 100 ms),
  which delays nothing but partials;
- once the caller is mid-utterance and the line has been quiet for a while (the pause
  the provider is timing), each frame goes out at once, so the end-of-utterance pause is
  measured on time;
- while the bot talks in barge-in mode (`low_latency`), each loud frame of the caller's
  goes out at once with whatever is pending, so an interruption's words are heard
  without a batch wait; the quiet line under the bot's voice is still batched.
One worker task per call owns all writes; feeding audio never creates a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from voicebot.audio import peak
from voicebot.clock import Clock
from voicebot.config import EngineSettings
from voicebot.engine.assembler import UtteranceAssembler
from voicebot.engine.recovery import Action, Recovery
from voicebot.ops import metrics
from voicebot.providers.base import (
    ProviderError,
    RecognitionOptions,
    RecognitionStream,
    SpeechRecognizer,
    StatusCode,
    SupportsFailover,
)
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

IDLE_REPLAY_MARGIN_MS = 3000
# A frame whose peak is below this (~-30 dBFS) may be the pause that ends an utterance.
QUIET_PEAK = 1000
# Quiet frames go out one by one from this long before the provider's pause hint ends:
# earlier quiet audio cannot end the utterance yet, so it may wait for its batch.
EOU_GUARD_MS = 300
# A quiet line with no utterance open is sent in batches this long (see the module doc).
IDLE_BATCH_MS = 500
# After a loud frame, speech may go on quietly (a soft syllable, a breath): this long it
# is batched as speech, not as an idle line.
VOICE_HOLD_MS = 1000


class ContinuousRecognizer:
    """A call's recognition: one writer task, streams opened, rotated and recovered."""

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        options: RecognitionOptions,
        settings: EngineSettings,
        clock: Clock,
        assembler: UtteranceAssembler,
        on_error: Callable[[ProviderError], None] = lambda e: None,
    ) -> None:
        self._recognizer = recognizer
        self._options = options
        self._settings = settings
        self._policy = settings.recovery
        self._recovery = Recovery(
            self._policy, recognizer if isinstance(recognizer, SupportsFailover) else None
        )
        self._clock = clock
        self.assembler = assembler
        self._on_error = on_error
        self._bytes_per_ms = options.sample_rate * 2 // 1000
        self._batch_bytes = settings.stt_batch_ms * self._bytes_per_ms
        self._idle_batch_bytes = max(self._batch_bytes, IDLE_BATCH_MS * self._bytes_per_ms)
        self._hold_bytes = VOICE_HOLD_MS * self._bytes_per_ms
        self._voiced_upto = -self._hold_bytes  # call-audio offset where the hold ends
        self._urgent = False  # the next wake-up writes whatever is pending
        self._last_feed = clock.monotonic()
        # Audio that stops arriving for a batch's length leaves its part-batch behind.
        self._stall_s = settings.stt_batch_ms / 1000
        self._quiet_ms = 0  # how long the caller's line has been quiet (mid-utterance)
        # Set by the session while the bot talks in barge-in mode: the caller's loud
        # frames go out at once, so an interruption's first words reach the recognizer
        # without a batch wait.
        self.low_latency = False
        self._flush_quiet_ms = max(0, options.eou_pause_ms - EOU_GUARD_MS)
        # Ring buffer of caller audio: _ring holds call audio [_ring_start_ms, fed_ms).
        self._ring = bytearray()
        self._ring_start_ms = 0
        self._max_ring_bytes = int(self._policy.replay_buffer_s * 1000) * self._bytes_per_ms
        self._sent_upto = 0  # absolute byte offset in call audio written to the live stream
        self._idle_floor_ms = 0
        self._fed_bytes = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._last_write = clock.monotonic()
        self._stream_failed: ProviderError | None = None
        self._stream_ended = False
        # Observability for tests and metrics.
        self.streams_opened = 0
        self.reconnects = 0
        self.rotations = 0
        self.stream_base_ms = 0
        self.failed: ProviderError | None = None

    # ------------------------------------------------------------------ input

    @property
    def fed_ms(self) -> int:
        """Caller audio fed so far, plus keep-alive silence (ms of call time)."""
        return self._fed_bytes // self._bytes_per_ms

    def feed(self, pcm: bytes) -> None:
        """Caller audio, any frame size. Cheap: append, and wake the writer per batch."""
        if self._closed or self.failed is not None:
            return
        n = len(pcm)
        self._ring += pcm
        fed = self._fed_bytes = self._fed_bytes + n
        self._last_feed = self._clock.monotonic()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="stt-worker")
        loud = peak(pcm) >= QUIET_PEAK
        held = fed - n <= self._voiced_upto
        if loud:
            self._voiced_upto = fed + self._hold_bytes
        # A voice onset after a quiet line, the caller over the bot in barge-in mode, and
        # the pause that may end an utterance go out at once; the rest fills its batch.
        if (loud and (not held or self.low_latency)) or self._eou_near(n, loud):
            self._urgent = True
        if self._urgent or fed - self._sent_upto >= self._batch_size():
            self._wake.set()

    def _batch_size(self) -> int:
        """Bytes to gather before a write: speech-sized while an utterance is open or
        voice was heard within `VOICE_HOLD_MS`, idle-sized on a quiet line."""
        if not self.assembler.idle or self._fed_bytes <= self._voiced_upto:
            return self._batch_bytes
        return self._idle_batch_bytes

    def _eou_near(self, nbytes: int, loud: bool) -> bool:
        if loud or self.assembler.idle:
            self._quiet_ms = 0
            return False
        self._quiet_ms += nbytes // self._bytes_per_ms
        return self._quiet_ms >= self._flush_quiet_ms

    def tick(self) -> None:
        """Periodic check (the session's ticker): a batch left part-full when the caller's
        audio stopped goes out, and keep-alive silence follows while it stays stopped."""
        if self._worker is None or self._closed:
            return
        now = self._clock.monotonic()
        if self._fed_bytes > self._sent_upto and now - self._last_feed >= self._stall_s:
            # No more audio is coming to fill it (a muted microphone, a held call): the
            # recognizer gets what was said now, and the keep-alive counts from here.
            self._urgent = True
            self._wake.set()
        idle_ms = (now - self._last_write) * 1000
        if idle_ms >= self._policy.keepalive_ms:
            self._wake.set()

    async def aclose(self) -> None:
        """Stop recognition: the worker and its stream are closed."""
        self._closed = True
        self._wake.set()
        err = await cancel_and_wait(self._worker)
        if err is not None:
            log.error("recognition worker failed: %r", err)

    # ------------------------------------------------------------------ worker

    async def _run(self) -> None:
        while not self._closed:
            replay_from = self._replay_point()
            try:
                stream = await self._recognizer.open_stream(self._options)
            except ProviderError as e:
                if not await self._recover(e):
                    return
                continue
            self.streams_opened += 1
            self.stream_base_ms = replay_from
            self.assembler.reset_stream(replay_from)
            self._sent_upto = replay_from * self._bytes_per_ms  # absolute call-audio offset
            self._stream_failed = None
            self._stream_ended = False
            got_results = asyncio.Event()
            reader = asyncio.get_running_loop().create_task(
                self._read(stream, got_results), name="stt-reader"
            )
            try:
                reason = await self._pump(stream, replay_from)
            finally:
                await cancel_and_wait(reader)
                try:
                    await stream.aclose()
                except Exception as e:  # the stream is being dropped anyway
                    log.debug("closing a recognition stream failed: %r", e)
            if got_results.is_set():
                self._recovery.results()
            if reason == "rotate":
                self.rotations += 1
                self._recovery.rotated()
                metrics.stt_stream_event("rotation")
                continue
            if reason == "closed":
                return
            # The stream failed or ended on its own: reconnect and replay.
            self.reconnects += 1
            metrics.stt_stream_event("reconnect")
            err = self._stream_failed or ProviderError("stream ended", code="ENDED", retriable=True)
            if not await self._recover(err):
                return

    async def _recover(self, err: ProviderError) -> bool:
        """Act on `recovery.py`'s verdict; False when recognition gives up."""
        verdict = self._recovery.failure(err)
        if verdict.action is Action.GIVE_UP:
            log.error("recognition gave up (%s): %r", verdict.reason, err)
            self.failed = err
            self._on_error(err)
            return False
        if verdict.action is Action.FAIL_OVER:
            log.warning("recognition fails over (%s)", verdict.reason)
            return not self._closed
        log.warning(
            "recognition stream lost (%s); retry %d in %.2fs",
            verdict.reason,
            self._recovery.attempts,
            verdict.delay_s,
        )
        if verdict.delay_s > 0:
            await self._clock.sleep(verdict.delay_s)
        return not self._closed

    def _replay_point(self) -> int:
        """Call time from which a new stream must hear the audio again: the last end of
        utterance, or — while nobody speaks — a few seconds back (speech that started but
        has no partial yet is still covered)."""
        return max(self.assembler.committed_ms, self._idle_floor_ms, self._ring_start_ms)

    async def _pump(self, stream: RecognitionStream, base_ms: int) -> str:
        rotate_ms = self._policy.rotate_s * 1000
        hard_cap_ms = rotate_ms + 10_000  # past this, rotate even mid-utterance
        while True:
            if self._closed:
                return "closed"
            if self._stream_failed is not None or self._stream_ended:
                return "failed"
            pending = self._fed_bytes - self._sent_upto
            urgent = (
                self._urgent
                or (not self.assembler.idle and self._quiet_ms >= self._flush_quiet_ms)
                or self._keepalive_due()
            )
            if pending >= self._batch_size() or (pending > 0 and urgent):
                self._urgent = False
                await self._write_audio(stream, pending)
            elif self._keepalive_due():
                ms = int((self._clock.monotonic() - self._last_write) * 1000)
                self._append_silence(ms)
                await self._write_audio(stream, self._fed_bytes - self._sent_upto, silence_ms=ms)
            stream_ms = self.fed_ms - base_ms
            if stream_ms >= rotate_ms and (self.assembler.idle or stream_ms >= hard_cap_ms):
                return "rotate"
            self._trim_ring()
            self._wake.clear()
            if self._urgent or self._fed_bytes - self._sent_upto >= self._batch_size():
                continue
            await self._wake.wait()

    def _keepalive_due(self) -> bool:
        idle_ms = (self._clock.monotonic() - self._last_write) * 1000
        return idle_ms >= self._policy.keepalive_ms

    async def _write_audio(
        self, stream: RecognitionStream, nbytes: int, silence_ms: int = 0
    ) -> None:
        try:
            if silence_ms:
                await stream.send_silence(silence_ms)
            else:
                start = self._sent_upto - self._ring_start_ms * self._bytes_per_ms
                # One copy out of the ring (a bytearray slice would copy twice); the view
                # is released at once so the ring can still grow and shrink.
                with memoryview(self._ring) as ring:
                    chunk = bytes(ring[start : start + nbytes])
                await stream.send_audio(chunk)
        except ProviderError as e:
            self._stream_failed = e
            return
        except Exception as e:  # a dead channel surfaces here first
            self._stream_failed = ProviderError(str(e), code="WRITE_FAILED", retriable=True)
            return
        self._sent_upto += nbytes
        self._last_write = self._clock.monotonic()

    def _append_silence(self, ms: int) -> None:
        """Silence sent as silence_chunk still advances the stream's clock: mirror it in
        the ring so call time and stream time stay aligned for replays."""
        self._ring += bytes(ms * self._bytes_per_ms)
        self._fed_bytes += ms * self._bytes_per_ms

    def _trim_ring(self) -> None:
        """Drop audio no replay can need. Done in >= 1 s steps to amortise the memmove."""
        if self.assembler.idle:
            self._idle_floor_ms = max(self._idle_floor_ms, self.fed_ms - IDLE_REPLAY_MARGIN_MS)
        floor_ms = max(self._replay_point(), self.fed_ms - len(self._ring) // self._bytes_per_ms)
        if len(self._ring) > self._max_ring_bytes:
            floor_ms = max(floor_ms, self.fed_ms - self._max_ring_bytes // self._bytes_per_ms)
        # Never drop audio the live stream has not received yet.
        floor_ms = min(floor_ms, self._sent_upto // self._bytes_per_ms)
        drop_ms = floor_ms - self._ring_start_ms
        if drop_ms >= 1000:
            del self._ring[: drop_ms * self._bytes_per_ms]
            self._ring_start_ms = floor_ms

    async def _read(self, stream: RecognitionStream, got_results: asyncio.Event) -> None:
        try:
            async for ev in stream:
                if not isinstance(ev, StatusCode):  # keep-alives prove nothing
                    got_results.set()
                self.assembler.on_event(ev)
        except ProviderError as e:
            self._stream_failed = e
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("recognition reader crashed")
            self._stream_failed = ProviderError(str(e), code="READER", retriable=True)
        else:
            self._stream_ended = True
        self._wake.set()
