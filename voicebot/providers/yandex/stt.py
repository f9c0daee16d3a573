"""SpeechKit STT v3 streaming recognition over gRPC (`speechkit.stt.v3.Recognizer`).

One channel per `YandexSTT`, shared by all its streams. Each stream is a bidirectional
call driven with `call.write()` / `call.read()`: no per-message tasks on the hot path,
which matters with hundreds of calls sending audio every ~100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc

from voicebot.providers.base import (
    AudioCursors,
    AuthError,
    EndOfUtterance,
    Final,
    FinalRefinement,
    Partial,
    ProviderError,
    RateLimitError,
    RecognitionEvent,
    RecognitionOptions,
    ReopenNow,
    StatusCode,
    StreamLimitError,
    Word,
)
from voicebot.providers.yandex.auth import YandexAuth
from voicebot.providers.yandex.channel import open_channel

log = logging.getLogger(__name__)

PROVIDER = "yandex"
# After a refusal, how long the next stream waits for the server to accept it.
REOPEN_ACCEPT_WAIT_S = 1.0
# grpc-aio's debug string for a write that failed locally because the call had ended.
_LOCAL_WRITE_FAILURE = 'Failed "execute_batch"'
_RETRIABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,  # includes RST_STREAM resets
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)


def map_grpc_error(code: grpc.StatusCode, details: str | None) -> ProviderError:
    """The `ProviderError` subclass and retriability for a gRPC status."""
    msg = f"SpeechKit STT: {code.name}: {details or ''}".rstrip(": ")
    kw = {"code": code.name, "provider": PROVIDER}
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AuthError(msg, retriable=False, **kw)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimitError(msg, retriable=True, **kw)
    if code is grpc.StatusCode.OUT_OF_RANGE:
        return StreamLimitError(msg, retriable=True, **kw)
    return ProviderError(msg, retriable=code in _RETRIABLE, **kw)


def session_options(options: RecognitionOptions) -> stt_pb2.StreamingRequest:
    """The first request of a stream: raw LINEAR16 at the rate, language, normalization, EOU
    hint."""
    eou_kw = (
        {"max_pause_between_words_hint_ms": options.eou_pause_ms} if options.eou_pause_ms else {}
    )
    return stt_pb2.StreamingRequest(
        session_options=stt_pb2.StreamingOptions(
            recognition_model=stt_pb2.RecognitionModelOptions(
                model=options.model,
                audio_format=stt_pb2.AudioFormatOptions(
                    raw_audio=stt_pb2.RawAudio(
                        audio_encoding=stt_pb2.RawAudio.LINEAR16_PCM,
                        sample_rate_hertz=options.sample_rate,
                        audio_channel_count=1,
                    )
                ),
                text_normalization=stt_pb2.TextNormalizationOptions(
                    text_normalization=(
                        stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
                        if options.normalize
                        else stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
                    )
                ),
                language_restriction=stt_pb2.LanguageRestrictionOptions(
                    restriction_type=stt_pb2.LanguageRestrictionOptions.WHITELIST,
                    language_code=[options.language],
                ),
                audio_processing_type=stt_pb2.RecognitionModelOptions.REAL_TIME,
            ),
            eou_classifier=stt_pb2.EouClassifierOptions(
                default_classifier=stt_pb2.DefaultEouClassifier(
                    type=stt_pb2.DefaultEouClassifier.DEFAULT, **eou_kw
                )
            ),
        )
    )


def to_event(resp: stt_pb2.StreamingResponse) -> RecognitionEvent | None:
    """Map one response to a typed event; kinds the bot does not use give None."""
    kind = resp.WhichOneof("Event")
    c = resp.audio_cursors
    cursors = AudioCursors(
        received_data_ms=c.received_data_ms,
        reset_time_ms=c.reset_time_ms,
        partial_time_ms=c.partial_time_ms,
        final_time_ms=c.final_time_ms,
        final_index=c.final_index,
        eou_time_ms=c.eou_time_ms,
    )
    if kind == "partial" or kind == "final":
        update = resp.partial if kind == "partial" else resp.final
        if update.alternatives:
            alt = update.alternatives[0]
            text, start, end = alt.text, alt.start_time_ms, alt.end_time_ms
            words = tuple(Word(w.text, w.start_time_ms, w.end_time_ms) for w in alt.words)
        else:
            text, start, end, words = "", 0, 0, ()
        if kind == "partial":
            return Partial(text, start, end, cursors, words)
        return Final(text, c.final_index, start, end, cursors, words)
    if kind == "final_refinement":
        fr = resp.final_refinement
        alts = fr.normalized_text.alternatives
        return FinalRefinement(alts[0].text if alts else "", fr.final_index, cursors)
    if kind == "eou_update":
        return EndOfUtterance(resp.eou_update.time_ms, cursors)
    if kind == "status_code":
        sc = resp.status_code
        return StatusCode(stt_pb2.CodeType.Name(sc.code_type), sc.message, cursors)
    return None


class YandexRecognitionStream:
    """One `RecognizeStreaming` call. Writers and the reader may run in different tasks.

    A single call: it does not reconnect or replay. A call refused before its first
    response as UNAUTHENTICATED (an expired IAM token: the credentials are invalidated
    here) or with a status lost to a grpc-aio race raises `ReopenNow`, so the engine
    opens a new stream at once; anything else raises the mapped `ProviderError`, from
    writes and from the iterator alike. A stream opened right after such a refusal
    (`careful`) waits for the server to accept it before returning, so a second
    refusal is seen with its real status, and never asks for another reopen.
    """

    def __init__(
        self,
        stub: stt_service_pb2_grpc.RecognizerStub,
        auth: YandexAuth,
        options: RecognitionOptions,
        *,
        careful: bool = False,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self._stub = stub
        self._auth = auth
        self._options = options
        self._careful = careful
        self._on_refused = on_refused
        self.request_id = str(uuid.uuid4())
        self._call: grpc.aio.StreamStreamCall | None = None
        self._accepted = False  # the server has answered at least once
        self._refusal: ProviderError | None = None
        self._closed = False

    async def _open_call(self) -> grpc.aio.StreamStreamCall:
        md: list[tuple[str, str | bytes]] = list(await self._auth.headers())
        md.append(("x-client-request-id", self.request_id))
        for key, value in self._options.metadata:
            k = key.lower()
            md.append(
                (k, value.encode() if k.endswith("-bin") and isinstance(value, str) else value)
            )
        return self._stub.RecognizeStreaming(metadata=md)

    async def start(self) -> None:
        """Open the call and send the session options (careful: and wait, bounded,
        for the server to accept them; a refusal is raised from here)."""
        self._call = call = await self._open_call()
        await self._write(session_options(self._options))
        if not self._careful:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.initial_metadata(), REOPEN_ACCEPT_WAIT_S)
        if call.done():
            code = await call.code()
            if code is not grpc.StatusCode.OK:
                raise map_grpc_error(code, await call.details())

    # ------------------------------------------------------------------ writing

    async def send_audio(self, pcm: bytes) -> None:
        """One `chunk` of LINEAR16 audio."""
        # Setting the field in place copies the audio once (nested constructors copy twice).
        req = stt_pb2.StreamingRequest()
        req.chunk.data = pcm
        await self._write(req)

    async def send_silence(self, duration_ms: int) -> None:
        """A `silence_chunk`: advances the stream's clock, keeps the stream alive."""
        req = stt_pb2.StreamingRequest()
        req.silence_chunk.duration_ms = duration_ms
        await self._write(req)

    async def send_eou(self) -> None:
        """Only meaningful with an external EOU classifier."""
        await self._write(stt_pb2.StreamingRequest(eou=stt_pb2.Eou()))

    async def _write(self, req: stt_pb2.StreamingRequest) -> None:
        call = self._call
        assert call is not None
        try:
            await call.write(req)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            raise await self._write_error(call, e) from None

    async def finish(self) -> None:
        """Half-close: no more audio; the remaining results still arrive."""
        call = self._call
        if call is None or self._closed:
            return
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.done_writing()

    async def aclose(self) -> None:
        """Cancel the call."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def _write_error(
        self, call: grpc.aio.StreamStreamCall, e: BaseException
    ) -> ProviderError:
        if isinstance(e, grpc.aio.AioRpcError):
            return await self._refused(call, map_grpc_error(e.code(), e.details()))
        if self._closed:
            return ProviderError("stream closed", code="CANCELLED", provider=PROVIDER)
        if call.done():
            code = await call.code()
            if code is not grpc.StatusCode.OK:
                return await self._refused(call, map_grpc_error(code, await call.details()))
        return ProviderError(
            "stream already finished", code="FAILED_PRECONDITION", provider=PROVIDER
        )

    async def _refused(self, call: grpc.aio.StreamStreamCall, err: ProviderError) -> ProviderError:
        """`err`, or `ReopenNow(err)` when a new stream may succeed at once.

        Before any response: UNAUTHENTICATED (the IAM token expired), or a local
        INTERNAL "Internal error from Core" that hides the server's status
        (grpc/grpc#36066). Either way the credentials are invalidated, so the next
        stream gets a fresh token."""
        if self._refusal is not None:
            return self._refusal  # the writer and the reader see the same verdict
        masked = False
        if err.code == grpc.StatusCode.INTERNAL.name:
            with contextlib.suppress(asyncio.CancelledError):
                masked = _LOCAL_WRITE_FAILURE in (await call.debug_error_string() or "")
        if not self._accepted and not self._closed and not self._careful:
            if err.code == grpc.StatusCode.UNAUTHENTICATED.name or masked:
                log.info("STT call refused before any response (%s); a new one may pass", err.code)
                await self._auth.invalidate()
                self._on_refused()
                err = ReopenNow(err)
        elif masked:
            return err  # not a verdict: the reader still gets the server's real status
        self._refusal = err
        return err

    # ------------------------------------------------------------------ reading

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[RecognitionEvent]:
        call = self._call
        assert call is not None
        while True:
            try:
                resp = await call.read()
            except grpc.aio.AioRpcError as e:
                if self._closed and e.code() is grpc.StatusCode.CANCELLED:
                    return
                raise await self._refused(call, map_grpc_error(e.code(), e.details())) from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and not (task and task.cancelling()):
                    return  # aclose() cancelled the call, not our task
                raise
            if resp is grpc.aio.EOF:
                return
            self._accepted = True
            event = to_event(resp)
            if event is not None:
                yield event


class YandexSTT:
    """`SpeechRecognizer` for SpeechKit v3 (or the emulator) at an explicit endpoint."""

    name = "yandex"

    def __init__(self, endpoint: str, auth: YandexAuth, *, tls: bool = True) -> None:
        self._auth = auth
        self._channel = open_channel(endpoint, tls)
        self._stub = stt_service_pb2_grpc.RecognizerStub(self._channel)
        self._refused = False  # a stream was just refused before any response

    async def open_stream(self, options: RecognitionOptions) -> YandexRecognitionStream:
        """One `RecognizeStreaming` call with the session options sent."""
        careful, self._refused = self._refused, False
        stream = YandexRecognitionStream(
            self._stub, self._auth, options, careful=careful, on_refused=self._mark_refused
        )
        await stream.start()
        return stream

    def _mark_refused(self) -> None:
        self._refused = True

    async def aclose(self) -> None:
        """Close the gRPC channel."""
        await self._channel.close()
