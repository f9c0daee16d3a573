"""One emulated SpeechKit recognition stream: VAD, the current utterance, audio cursors;
requests in, responses out (see `stt.py` for the protocol and its status codes).

Timing is in audio time (ms of audio received; `silence_chunk` counts its duration).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import grpc
import numpy as np
from yandex.cloud.ai.stt.v3 import stt_pb2

from voicebot.emulator.scripts import (
    ScriptCursor,
)
from voicebot.emulator.vad import EnergyVad

log = logging.getLogger(__name__)

MIN_VOICED_MS = 150  # shorter voiced bursts are blips: no text consumed, no events

PARTIAL_EVERY_MS = 250  # of voiced audio

KEEPALIVE_EVERY_MS = 1000  # of received audio

WORD_MS = 300  # voiced audio per word revealed in partials

# A recognizer shows the last words of a phrase shortly after they are spoken, long
# before the EOU pause ends: this long into a pause the partial carries every word.
TRAILING_PARTIAL_MS = 150

_WORD_RE = re.compile(r"\w+(?:[-']\w+)*")


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


class Recognition:
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
        """Audio received so far (ms), partial frame included."""
        return self._ms(self.vad.received_samples)

    # ------------------------------------------------------------------ inputs

    def audio_ms_after(self, pcm_bytes: int = 0, silence_ms: int = 0) -> int:
        """Audio time (ms) after `pcm_bytes` more audio and `silence_ms` more silence."""
        return self._ms(self.vad.received_samples + pcm_bytes // 2) + silence_ms

    def on_start(self) -> list[stt_pb2.StreamingResponse]:
        """The stream opened: the first keep-alive status."""
        out: list[stt_pb2.StreamingResponse] = []
        self._keepalive(out)
        return out

    def on_audio(self, pcm: bytes) -> list[stt_pb2.StreamingResponse]:
        """Caller audio: VAD frames drive utterances, partials, finals and ends of
        utterance."""
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
        """Skipped silence: time moves, an utterance may end."""
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
