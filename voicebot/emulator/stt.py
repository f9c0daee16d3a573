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
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import numpy as np
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc

from voicebot.config import EmulatorSettings
from voicebot.emulator.scripts import (
    ScriptCursor,
    ScriptRegistry,
    load_script_file,
    parse_utterances_bin,
)
from voicebot.emulator.vad import SUPPORTED_RATES, EnergyVad

log = logging.getLogger(__name__)

QUIRKS = frozenset({"double_final", "empty_final", "eou_before_final"})
DEFAULT_EOU_PAUSE_MS = 1000  # when session_options carry no hint
MIN_VOICED_MS = 150  # shorter voiced bursts are blips: no text consumed, no events
PARTIAL_EVERY_MS = 250  # of voiced audio
KEEPALIVE_EVERY_MS = 1000  # of received audio
WORD_MS = 300  # voiced audio per word revealed in partials
# A recognizer shows the last words of a phrase shortly after they are spoken, long
# before the EOU pause ends: this long into a pause the partial carries every word.
TRAILING_PARTIAL_MS = 150

MD_UTTERANCES = "x-emulator-utterances-bin"
MD_SCRIPT_ID = "x-emulator-script-id"
MD_QUIRKS = "x-emulator-quirks"

_WORD_RE = re.compile(r"\w+(?:[-']\w+)*")


class Authenticator(Protocol):
    def check(self, authorization: str | None) -> bool: ...


class StreamFailure(Exception):
    """Ends a stream with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(slots=True)
class StreamRecord:
    """What one stream did; kept for tests and the emulator's status page."""

    session_uuid: str
    client_request_id: str = ""
    script_id: str | None = None
    sample_rate: int = 0
    received_ms: int = 0
    utterances: int = 0
    finals: int = 0
    texts: list[str] = field(default_factory=list)
    status: str = "OPEN"  # then OK, CANCELLED or the abort's status name
    kill: StreamFailure | None = None  # set by SttServicer.drop_streams()


@dataclass
class SttStats:
    streams_opened: int = 0
    streams_active: int = 0
    auth_failures: int = 0
    audio_ms_total: int = 0
    recent: deque[StreamRecord] = field(default_factory=lambda: deque(maxlen=2000))

    def by_request_id(self, client_request_id: str) -> list[StreamRecord]:
        return [r for r in self.recent if r.client_request_id == client_request_id]

    def by_script_id(self, script_id: str) -> list[StreamRecord]:
        return [r for r in self.recent if r.script_id == script_id]


def raw_words(text: str) -> list[str]:
    """What the recognizer itself outputs: lower case, no punctuation."""
    return _WORD_RE.findall(text.lower())


def _word_times(words: list[str], start_ms: int, end_ms: int) -> list[stt_pb2.Word]:
    """Spread words over the voiced span, proportional to their length."""
    if not words:
        return []
    total = sum(len(w) for w in words)
    span = max(end_ms - start_ms, len(words))
    out: list[stt_pb2.Word] = []
    acc = 0
    for w in words:
        s = start_ms + span * acc // total
        acc += len(w)
        out.append(
            stt_pb2.Word(text=w, start_time_ms=s, end_time_ms=start_ms + span * acc // total)
        )
    return out


class _Recognition:
    """State of one stream: VAD, current utterance, cursors; turns requests into responses."""

    def __init__(
        self,
        *,
        sample_rate: int,
        eou_pause_ms: int,
        external_eou: bool,
        normalize: bool,
        quirks: frozenset[str],
        cursor: ScriptCursor,
        record: StreamRecord,
        vad_threshold_dbfs: float,
    ) -> None:
        self.rate = sample_rate
        self.hint_ms = eou_pause_ms
        self.external_eou = external_eou
        self.normalize = normalize
        self.quirks = quirks
        self.cursor = cursor
        self.record = record
        self.vad = EnergyVad(sample_rate, threshold_dbfs=vad_threshold_dbfs)
        self.session = stt_pb2.SessionUuid(
            uuid=record.session_uuid, user_request_id=record.client_request_id
        )
        # Cursors as last reported.
        self.partial_time_ms = 0
        self.final_time_ms = 0
        self.final_index = 0
        self.eou_time_ms = 0
        self.next_final_index = 0
        self.next_keepalive_ms = 0
        # Current utterance.
        self.active = False
        self.confirmed = False
        self.utt_start_ms = 0
        self.last_voiced_end_ms = 0
        self.voiced_ms = 0
        self.next_partial_ms = PARTIAL_EVERY_MS
        self.shown_words = 0  # words already revealed (partials never shrink)

    # ------------------------------------------------------------------ time

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate

    @property
    def received_ms(self) -> int:
        return self._ms(self.vad.received_samples)

    # ------------------------------------------------------------------ inputs

    def audio_ms_after(self, pcm_bytes: int = 0, silence_ms: int = 0) -> int:
        return self._ms(self.vad.received_samples + pcm_bytes // 2) + silence_ms

    def on_start(self) -> list[stt_pb2.StreamingResponse]:
        out: list[stt_pb2.StreamingResponse] = []
        self._keepalive(out)
        return out

    def on_audio(self, pcm: bytes) -> list[stt_pb2.StreamingResponse]:
        out: list[stt_pb2.StreamingResponse] = []
        frames = self.vad.feed(pcm)
        if len(frames):
            fs = frames.frame_samples
            base = frames.start_sample
            for i in np.flatnonzero(frames.voiced).tolist():
                start_ms = self._ms(base + i * fs)
                if (
                    self.active
                    and not self.external_eou
                    and start_ms - self.last_voiced_end_ms >= self.hint_ms
                ):
                    self._end_utterance(self.last_voiced_end_ms + self.hint_ms, out)
                self._voiced_frame(start_ms, self._ms(base + (i + 1) * fs), out)
        self._after_input(out)
        return out

    def on_silence(self, duration_ms: int) -> list[stt_pb2.StreamingResponse]:
        out: list[stt_pb2.StreamingResponse] = []
        self.vad.skip(duration_ms * self.rate // 1000)
        self._after_input(out)
        return out

    def on_eou(self) -> list[stt_pb2.StreamingResponse]:
        """External classifier: the client says the utterance ended now."""
        out: list[stt_pb2.StreamingResponse] = []
        if self.external_eou and self.active:
            self._end_utterance(self.received_ms, out)
        return out

    def on_end(self) -> list[stt_pb2.StreamingResponse]:
        """Half-close: an utterance in progress ends with the stream."""
        out: list[stt_pb2.StreamingResponse] = []
        if self.active:
            eou = self.received_ms
            if not self.external_eou:
                eou = min(eou, self.last_voiced_end_ms + self.hint_ms)
            self._end_utterance(eou, out)
        return out

    def _after_input(self, out: list[stt_pb2.StreamingResponse]) -> None:
        received = self.received_ms
        self.record.received_ms = received
        if (
            self.active
            and not self.external_eou
            and received - self.last_voiced_end_ms >= self.hint_ms
        ):
            self._end_utterance(self.last_voiced_end_ms + self.hint_ms, out)
        elif (
            self.active
            and self.confirmed
            and received - self.last_voiced_end_ms >= TRAILING_PARTIAL_MS
        ):
            self._partial(self.last_voiced_end_ms, out, every_word=True)
        self._keepalive(out)

    # ------------------------------------------------------------------ utterances

    def _voiced_frame(
        self, start_ms: int, end_ms: int, out: list[stt_pb2.StreamingResponse]
    ) -> None:
        if not self.active:
            self.active = True
            self.confirmed = False
            self.utt_start_ms = start_ms
            self.voiced_ms = 0
            self.next_partial_ms = PARTIAL_EVERY_MS
            self.shown_words = 0
        self.voiced_ms += end_ms - start_ms
        self.last_voiced_end_ms = end_ms
        if not self.confirmed:
            if self.voiced_ms < MIN_VOICED_MS:
                return
            self.confirmed = True
            self.partial_time_ms = end_ms
            out.append(self._resp(partial=stt_pb2.AlternativeUpdate()))
        if self.voiced_ms >= self.next_partial_ms:
            self.next_partial_ms += PARTIAL_EVERY_MS
            self._partial(end_ms, out, every_word=False)

    def _partial(
        self, end_ms: int, out: list[stt_pb2.StreamingResponse], *, every_word: bool
    ) -> None:
        """A partial with the words revealed so far (all of them in a pause)."""
        text = self.cursor.peek()
        if not text:
            return
        words = raw_words(text)
        n = len(words) if every_word else min(len(words), self.voiced_ms // WORD_MS)
        n = max(1, n, self.shown_words)
        if every_word and n == self.shown_words:
            return  # nothing new to show
        self.shown_words = n
        shown = words[:n]
        self.partial_time_ms = end_ms
        alt = stt_pb2.Alternative(
            words=_word_times(shown, self.utt_start_ms, end_ms),
            text=" ".join(shown),
            start_time_ms=self.utt_start_ms,
            end_time_ms=end_ms,
        )
        out.append(self._resp(partial=stt_pb2.AlternativeUpdate(alternatives=[alt])))

    def _end_utterance(self, eou_ms: int, out: list[stt_pb2.StreamingResponse]) -> None:
        self.active = False
        if not self.confirmed:
            return  # a blip: nothing said, nothing consumed
        start, end = self.utt_start_ms, self.last_voiced_end_ms
        text = self.cursor.peek()
        self.cursor.consume()
        self.record.utterances += 1
        self.record.texts.append(text or "")

        if text:
            tokens = text.split()
            if "double_final" in self.quirks and len(tokens) >= 2:
                half = (len(tokens) + 1) // 2
                parts = [" ".join(tokens[:half]), " ".join(tokens[half:])]
            else:
                parts = [text]
            part_words = [raw_words(p) for p in parts]
            timed = _word_times([w for ws in part_words for w in ws], start, end)
            offset = 0
            for n, (part, ws) in enumerate(zip(parts, part_words, strict=True)):
                words = timed[offset : offset + len(ws)]
                offset += len(ws)
                last = n == len(parts) - 1
                p_start = words[0].start_time_ms if words else start
                p_end = end if last else (words[-1].end_time_ms if words else end)
                alt = stt_pb2.Alternative(
                    words=words, text=" ".join(ws), start_time_ms=p_start, end_time_ms=p_end
                )
                self._final([alt], part, eou_ms if last else p_end, out)
        else:
            # Script exhausted: like non-speech, a final without alternatives.
            self._final([], "", eou_ms, out)

        trailing_empty = "empty_final" in self.quirks or "eou_before_final" in self.quirks
        if "eou_before_final" in self.quirks:
            self._eou(eou_ms, out)
        if trailing_empty:
            alt = stt_pb2.Alternative(text="", start_time_ms=eou_ms, end_time_ms=eou_ms)
            self._final([alt], "", eou_ms, out)
        if "eou_before_final" not in self.quirks:
            self._eou(eou_ms, out)
        # Reset: an empty partial opens the next utterance.
        self.partial_time_ms = eou_ms
        out.append(self._resp(partial=stt_pb2.AlternativeUpdate()))

    def _final(
        self,
        alternatives: list[stt_pb2.Alternative],
        normalized: str,
        final_time_ms: int,
        out: list[stt_pb2.StreamingResponse],
    ) -> None:
        idx = self.next_final_index
        self.next_final_index += 1
        self.final_index = idx
        self.final_time_ms = final_time_ms
        self.partial_time_ms = max(self.partial_time_ms, final_time_ms)
        self.record.finals += 1
        out.append(self._resp(final=stt_pb2.AlternativeUpdate(alternatives=alternatives)))
        if self.normalize:
            alts = []
            if alternatives:
                a = alternatives[0]
                alts = [
                    stt_pb2.Alternative(
                        text=normalized, start_time_ms=a.start_time_ms, end_time_ms=a.end_time_ms
                    )
                ]
            out.append(
                self._resp(
                    final_refinement=stt_pb2.FinalRefinement(
                        final_index=idx,
                        normalized_text=stt_pb2.AlternativeUpdate(alternatives=alts),
                    )
                )
            )

    def _eou(self, eou_ms: int, out: list[stt_pb2.StreamingResponse]) -> None:
        self.eou_time_ms = eou_ms
        out.append(self._resp(eou_update=stt_pb2.EouUpdate(time_ms=eou_ms)))

    def _keepalive(self, out: list[stt_pb2.StreamingResponse]) -> None:
        received = self.received_ms
        if received >= self.next_keepalive_ms:
            self.next_keepalive_ms = (received // KEEPALIVE_EVERY_MS + 1) * KEEPALIVE_EVERY_MS
            out.append(self._resp(status_code=stt_pb2.StatusCode(code_type=stt_pb2.WORKING)))

    def _resp(self, **event: object) -> stt_pb2.StreamingResponse:
        return stt_pb2.StreamingResponse(
            session_uuid=self.session,
            audio_cursors=stt_pb2.AudioCursors(
                received_data_ms=self.received_ms,
                reset_time_ms=0,
                partial_time_ms=self.partial_time_ms,
                final_time_ms=self.final_time_ms,
                final_index=self.final_index,
                eou_time_ms=self.eou_time_ms,
            ),
            response_wall_time_ms=int(time.time() * 1000),
            channel_tag="0",
            **event,  # type: ignore[arg-type]
        )


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
        rec: _Recognition | None = None
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
    ) -> _Recognition:
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
        return _Recognition(
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
        self, rec: _Recognition, req: stt_pb2.StreamingRequest
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
    stt_service_pb2_grpc.add_RecognizerServicer_to_server(servicer, server)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str | bytes]:
    return {k: v for k, v in (context.invocation_metadata() or ())}


def _str(value: str | bytes | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")
