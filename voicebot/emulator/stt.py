"""SpeechKit STT v3 `Recognizer/RecognizeStreaming` emulator.

It speaks the real gRPC protocol (the `yandexcloud` generated stubs) so the production
client is tested over the wire. It does not recognize speech: an energy VAD finds the
utterances and each one takes its text from a transcript script (see `scripts.py`).

Timing is in AUDIO time (ms of audio received; `silence_chunk` counts its duration), so
results are the same however fast the audio is fed. Only the inactivity abort uses wall
time. Status codes:

* UNAUTHENTICATED: `auth.check(authorization)` refused the call.
* INVALID_ARGUMENT: first message not `session_options`; not raw LINEAR16_PCM; sample
  rate not 8000/16000/48000; more than one channel; bad emulator metadata.
* OUT_OF_RANGE "Exceeded maximum allowed stream duration": more than
  `stt_max_stream_s` of audio (silence_chunk included) in one stream.
* ABORTED: no message for `stt_inactivity_s` of wall time (the real service's code for
  this is undocumented; ABORTED matches its "session is aborted" wording).

Per-stream metadata understood by the emulator (tests and demos only):

* `x-emulator-utterances-bin`: UTF-8 JSON array of utterance texts for this stream.
* `x-emulator-script-id`: keep the script position under this id across streams.
* `x-emulator-quirks`: comma-separated, any of `double_final`, `empty_final`,
  `eou_before_final` (added to `settings.stt_quirks`).

Quirks: `double_final` splits the text over two finals before one eou_update;
`empty_final` adds an empty final after the real one(s); `eou_before_final` sends the
eou_update before that trailing empty final (and implies it).

With `external_classifier` in the session options, utterances end only on `eou{}` (or
when the stream closes) instead of after the pause hint.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc

from voicebot.config import EmulatorSettings
from voicebot.emulator.scripts import (
    MD_SCRIPT_ID,
    MD_UTTERANCES,
    ScriptRegistry,
    load_script_file,
    parse_utterances_bin,
)
from voicebot.emulator.stt_recognition import (
    Recognition,
    StreamFailure,
    StreamRecord,
)
from voicebot.emulator.vad import SUPPORTED_RATES

log = logging.getLogger(__name__)

QUIRKS = frozenset({"double_final", "empty_final", "eou_before_final"})
DEFAULT_EOU_PAUSE_MS = 1000  # when session_options carry no hint

MD_QUIRKS = "x-emulator-quirks"


class Authenticator(Protocol):
    """Checks a request's `authorization` metadata."""

    def check(self, authorization: str | None) -> bool:
        """True when the caller may use the service."""
        ...


@dataclass
class SttStats:
    """What the STT emulator saw: streams opened, auth failures, recent stream records."""

    streams_opened: int = 0
    streams_active: int = 0
    auth_failures: int = 0
    audio_ms_total: int = 0
    recent: deque[StreamRecord] = field(default_factory=lambda: deque(maxlen=2000))

    def by_request_id(self, client_request_id: str) -> list[StreamRecord]:
        """The records of streams opened with this `x-client-request-id`."""
        return [r for r in self.recent if r.client_request_id == client_request_id]

    def by_script_id(self, script_id: str) -> list[StreamRecord]:
        """The records of streams that used this `x-emulator-script-id`."""
        return [r for r in self.recent if r.script_id == script_id]


class SttServicer(stt_service_pb2_grpc.RecognizerServicer):
    """The emulator's `speechkit.stt.v3.Recognizer`. `auth=None` accepts every call."""

    def __init__(
        self,
        settings: EmulatorSettings,
        auth: Authenticator | None = None,
        *,
        scripts: ScriptRegistry | None = None,
        vad_threshold_dbfs: float = -45.0,
    ) -> None:
        unknown = set(settings.stt_quirks) - QUIRKS
        if unknown:
            raise ValueError(f"unknown emulator STT quirks: {sorted(unknown)}")
        self.settings = settings
        self.auth = auth
        self.scripts = scripts if scripts is not None else ScriptRegistry()
        self.vad_threshold_dbfs = vad_threshold_dbfs
        self.stats = SttStats()
        self._script: list[str] = (
            load_script_file(settings.stt_script) if settings.stt_script else []
        )

    def set_script(self, texts: Iterable[str]) -> None:
        """Replace the global transcript script (used when a stream brings none)."""
        self._script = [t.strip() for t in texts]

    @property
    def script(self) -> list[str]:
        """The process-wide transcript script (from `stt_script` or `set_script`)."""
        return list(self._script)

    def drop_streams(
        self,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
        details: str = "Received RST_STREAM with error code 2",
    ) -> int:
        """Fault injection: every open stream fails on its next message, as when a
        load balancer resets the connection. Returns how many were marked."""
        live = [r for r in self.stats.recent if r.status == "OPEN" and r.kill is None]
        for r in live:
            r.kill = StreamFailure(code, details)
        return len(live)

    async def RecognizeStreaming(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[stt_pb2.StreamingResponse]:
        """`RecognizeStreaming`: session options first, then audio, silence and eou in;
        events out."""
        md = _metadata(context)
        if self.auth is not None and not self.auth.check(_str(md.get("authorization"))):
            self.stats.auth_failures += 1
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "Unknown api key or invalid IAM token"
            )

        record = StreamRecord(
            session_uuid=str(uuid.uuid4()),
            client_request_id=_str(md.get("x-client-request-id")) or "",
            script_id=_str(md.get(MD_SCRIPT_ID)) or None,
        )
        self.stats.streams_opened += 1
        self.stats.streams_active += 1
        self.stats.recent.append(record)
        failure: StreamFailure | None = None
        loop = asyncio.get_running_loop()
        it = aiter(request_iterator)
        rec: Recognition | None = None
        try:
            async with asyncio.timeout(None) as tmo:
                while True:
                    tmo.reschedule(loop.time() + self.settings.stt_inactivity_s)
                    try:
                        req = await anext(it)
                    except StopAsyncIteration:
                        break
                    tmo.reschedule(None)
                    if record.kill is not None:
                        failure = record.kill
                        break
                    try:
                        if rec is None:
                            rec = self._open(req, md, record)
                            out = rec.on_start()
                        else:
                            out = self._handle(rec, req)
                    except StreamFailure as e:
                        failure = e
                        break
                    for resp in out:
                        yield resp
                if failure is None and rec is not None:
                    for resp in rec.on_end():
                        yield resp
        except TimeoutError:
            failure = StreamFailure(
                grpc.StatusCode.ABORTED,
                f"Session aborted: no data received for {self.settings.stt_inactivity_s:g} s",
            )
        except asyncio.CancelledError:
            record.status = "CANCELLED"
            raise
        finally:
            self.stats.streams_active -= 1
            self.stats.audio_ms_total += record.received_ms
            if record.status == "OPEN":
                record.status = failure.code.name if failure else "OK"
        if failure is not None:
            log.debug(
                "stt stream %s: %s %s", record.session_uuid, failure.code.name, failure.details
            )
            await context.abort(failure.code, failure.details)

    def _open(
        self, req: stt_pb2.StreamingRequest, md: dict[str, str | bytes], record: StreamRecord
    ) -> Recognition:
        if req.WhichOneof("Event") != "session_options":
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT, "First message should be session options"
            )
        opts = req.session_options
        model = opts.recognition_model
        if model.audio_format.WhichOneof("AudioFormat") != "raw_audio":
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT, "Emulator supports only raw LINEAR16_PCM audio"
            )
        raw = model.audio_format.raw_audio
        if raw.audio_encoding != stt_pb2.RawAudio.LINEAR16_PCM:
            raise StreamFailure(grpc.StatusCode.INVALID_ARGUMENT, "Unsupported audio encoding")
        if raw.sample_rate_hertz not in SUPPORTED_RATES:
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unsupported sample rate {raw.sample_rate_hertz}: use 8000, 16000 or 48000",
            )
        if raw.audio_channel_count not in (0, 1):
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT, "Only single channel audio is supported"
            )
        classifier = opts.eou_classifier.WhichOneof("Classifier")
        hint = opts.eou_classifier.default_classifier.max_pause_between_words_hint_ms
        quirks = set(self.settings.stt_quirks)
        q_md = _str(md.get(MD_QUIRKS))
        if q_md:
            quirks |= {q.strip() for q in q_md.split(",") if q.strip()}
        if quirks - QUIRKS:
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unknown emulator quirks: {sorted(quirks - QUIRKS)}",
            )
        texts = self._script
        if MD_UTTERANCES in md:
            try:
                texts = parse_utterances_bin(md[MD_UTTERANCES])
            except ValueError as e:  # includes JSON and UTF-8 errors
                raise StreamFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        record.sample_rate = raw.sample_rate_hertz
        return Recognition(
            sample_rate=raw.sample_rate_hertz,
            eou_pause_ms=hint if hint > 0 else DEFAULT_EOU_PAUSE_MS,
            external_eou=classifier == "external_classifier",
            normalize=model.text_normalization.text_normalization
            == stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
            quirks=frozenset(quirks),
            cursor=self.scripts.cursor(texts, record.script_id),
            record=record,
            vad_threshold_dbfs=self.vad_threshold_dbfs,
        )

    def _handle(
        self, rec: Recognition, req: stt_pb2.StreamingRequest
    ) -> list[stt_pb2.StreamingResponse]:
        kind = req.WhichOneof("Event")
        if kind == "chunk":
            data = req.chunk.data
            self._check_limit(rec.audio_ms_after(pcm_bytes=len(data)))
            return rec.on_audio(data)
        if kind == "silence_chunk":
            ms = max(0, req.silence_chunk.duration_ms)
            self._check_limit(rec.audio_ms_after(silence_ms=ms))
            return rec.on_silence(ms)
        if kind == "eou":
            return rec.on_eou()
        if kind == "session_options":
            raise StreamFailure(
                grpc.StatusCode.INVALID_ARGUMENT, "Session options may be sent only once"
            )
        return []

    def _check_limit(self, audio_ms: int) -> None:
        if audio_ms > self.settings.stt_max_stream_s * 1000:
            raise StreamFailure(
                grpc.StatusCode.OUT_OF_RANGE, "Exceeded maximum allowed stream duration"
            )


def add_stt_service(server: grpc.aio.Server, servicer: SttServicer) -> None:
    """Register the STT servicer on a grpc.aio server."""
    stt_service_pb2_grpc.add_RecognizerServicer_to_server(servicer, server)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str | bytes]:
    return {k: v for k, v in (context.invocation_metadata() or ())}


def _str(value: str | bytes | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")
