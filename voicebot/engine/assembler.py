"""Turns a recognizer's event stream into exactly one utterance per end of utterance.

SpeechKit may send several finals for one phrase, empty finals, a `final_refinement`
(the normalized text) per final, and `eou_update` — sometimes before the last final.
The seed debounced with a 200 ms timer; here duplicates are recognised by protocol
facts instead: `final_index` identifies a final, the EOU time identifies an utterance
boundary. All times are converted to *call* audio time (ms since the call's first
audio), so results stay comparable across stream rotations and reconnects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voicebot.engine.events import Segment
from voicebot.providers.base import (
    EndOfUtterance,
    Final,
    FinalRefinement,
    Partial,
    RecognitionEvent,
    StatusCode,
    Word,
)


@dataclass(frozen=True, slots=True)
class Utterance:
    """One caller utterance: text, call-audio times (ms) and how many finals made it."""

    segment_id: str
    text: str
    start_ms: int  # call audio time of the first word
    end_ms: int  # call audio time of the last word (end of caller speech)
    eou_ms: int  # call audio time at which the end of utterance was decided
    finals: int  # how many finals made it up
    words: tuple[Word, ...] = ()  # recognized words, call audio times (may be empty)


@dataclass(slots=True)
class _FinalPart:
    text: str
    start_ms: int
    end_ms: int
    words: tuple[Word, ...] = ()


class UtteranceAssembler:
    """Turns recognition events into utterances: one per end of utterance, finals
    deduplicated."""

    def __init__(
        self,
        *,
        normalize: bool,
        min_voiced_ms: int,
        on_partial: Callable[[Segment], None],
        on_utterance: Callable[[Utterance], None],
    ) -> None:
        self._normalize = normalize
        self._min_voiced_ms = min_voiced_ms
        self._on_partial = on_partial
        self._on_utterance = on_utterance
        self._base_ms = 0
        self._seg_counter = 0
        self._segment: Segment | None = None
        self._finals: dict[int, _FinalPart] = {}
        self._refined: dict[int, str] = {}
        self._closed_index = -1  # highest final_index already used in an utterance
        self._last_eou_ms = -1
        self._orphan_eou_ms: int | None = None  # EOU seen before its final (quirk)
        self._late_index: int | None = None  # a post-EOU final awaiting its refinement
        self._pending_eou_ms: int | None = None  # the EOU that late final belongs to
        self.committed_ms = 0  # call time up to which all audio became results
        self.utterances = 0
        self.dropped = 0

    # ------------------------------------------------------------------ state

    @property
    def idle(self) -> bool:
        """No caller speech is pending: a safe moment to rotate the stream."""
        return self._segment is None and not self._finals and self._late_index is None

    def reset_stream(self, base_ms: int) -> None:
        """A new physical stream starts at call time `base_ms`; its indexes restart.

        Pending finals of the old stream are dropped: the audio behind them is replayed
        into the new stream, so keeping them would duplicate words. The live segment id
        is kept so the caller's partial transcript keeps updating in place.
        """
        self._base_ms = base_ms
        self._finals.clear()
        self._refined.clear()
        self._closed_index = -1
        self._orphan_eou_ms = None
        self._late_index = None

    # ------------------------------------------------------------------ events

    def on_event(self, ev: RecognitionEvent) -> None:
        """One recognition event (partial, final, refinement, end of utterance, status)."""
        if self._late_index is not None and not (
            isinstance(ev, FinalRefinement) and ev.final_index == self._late_index
        ):
            self._complete(self._pending_eou_ms or self._last_eou_ms)
        if isinstance(ev, Partial):
            self._partial(ev)
        elif isinstance(ev, Final):
            self._final(ev)
        elif isinstance(ev, FinalRefinement):
            self._refinement(ev)
        elif isinstance(ev, EndOfUtterance):
            self._eou(ev)
        elif isinstance(ev, StatusCode):
            pass

    def _partial(self, ev: Partial) -> None:
        text = ev.text.strip()
        if not text:
            return  # the empty partial after an EOU is a reset marker
        prefix = self._joined_finals()
        full = f"{prefix} {text}".strip() if prefix else text
        seg = self._live_segment(self._base_ms + ev.start_ms)
        if full != seg.text:
            seg.text = full
            seg.revision += 1
            seg.end_ms = self._base_ms + max(ev.end_ms, ev.cursors.partial_time_ms)
            seg.words = self._final_words() + self._shift(ev.words)
            self._on_partial(seg)

    def _final(self, ev: Final) -> None:
        idx = ev.final_index
        if idx in self._finals or idx <= self._closed_index:
            return  # duplicate delivery of the same final
        end_call_ms = self._base_ms + (ev.end_ms or ev.cursors.final_time_ms)
        if self._orphan_eou_ms is not None and end_call_ms > self._orphan_eou_ms:
            self._orphan_eou_ms = None  # that EOU closed nothing; this final starts anew
        if (
            not ev.text.strip()
            and self._segment is None
            and not self._finals
            and self._orphan_eou_ms is None
            and end_call_ms <= self._last_eou_ms
        ):
            # An empty final for audio an EOU already closed: it ends nothing and must
            # not leave the assembler looking busy (idle gates rotation and reprompts).
            self._closed_index = idx
            return
        start = self._base_ms + (ev.start_ms or (ev.words[0].start_ms if ev.words else 0))
        end = self._base_ms + (
            ev.end_ms or (ev.words[-1].end_ms if ev.words else ev.cursors.final_time_ms)
        )
        self._finals[idx] = _FinalPart(ev.text.strip(), start, end, self._shift(ev.words))
        if ev.text.strip():
            seg = self._live_segment(start)
            joined = self._joined_finals()
            if joined != seg.text:
                seg.text = joined
                seg.revision += 1
                seg.end_ms = end
                seg.words = self._final_words()
                self._on_partial(seg)
        if self._orphan_eou_ms is not None:
            # eou_update arrived before this final: the utterance is already closed.
            eou = self._orphan_eou_ms
            self._orphan_eou_ms = None
            if self._normalize and ev.text.strip():
                self._late_index = idx
                self._pending_eou_ms = eou
            else:
                self._complete(eou)

    def _refinement(self, ev: FinalRefinement) -> None:
        if ev.final_index <= self._closed_index:
            return
        self._refined[ev.final_index] = ev.text.strip()
        if self._late_index == ev.final_index:
            self._complete(self._pending_eou_ms or self._last_eou_ms)

    def _eou(self, ev: EndOfUtterance) -> None:
        eou_ms = self._base_ms + (ev.time_ms or ev.cursors.eou_time_ms)
        if eou_ms <= self._last_eou_ms:
            return  # the same boundary reported twice
        self._last_eou_ms = eou_ms
        if self._finals:
            self._complete(eou_ms)
        else:
            self._orphan_eou_ms = eou_ms
            self.committed_ms = max(self.committed_ms, eou_ms)

    # ------------------------------------------------------------------ helpers

    def _live_segment(self, start_ms: int) -> Segment:
        if self._segment is None:
            self._seg_counter += 1
            self._segment = Segment(id=f"u{self._seg_counter}", start_ms=start_ms)
        return self._segment

    def _shift(self, words: tuple[Word, ...]) -> tuple[Word, ...]:
        """Stream-relative word times -> call audio times."""
        b = self._base_ms
        return tuple(Word(w.text, b + w.start_ms, b + w.end_ms, w.confidence) for w in words)

    def _final_words(self) -> tuple[Word, ...]:
        return tuple(w for i in sorted(self._finals) for w in self._finals[i].words)

    def _joined_finals(self) -> str:
        parts = (self._finals[i].text for i in sorted(self._finals))
        return " ".join(p for p in parts if p)

    def _complete(self, eou_ms: int) -> None:
        self._late_index = None
        self._pending_eou_ms = None
        indexes = sorted(self._finals)
        parts = [self._refined.get(i) or self._finals[i].text for i in indexes]
        text = " ".join(p for p in parts if p).strip()
        voiced = [self._finals[i] for i in indexes if self._finals[i].text]
        words = tuple(w for p in voiced for w in p.words)
        start = min((p.start_ms for p in voiced), default=eou_ms)
        end = max((p.end_ms for p in voiced), default=eou_ms)
        if indexes:
            self._closed_index = max(self._closed_index, indexes[-1])
        self._finals.clear()
        self._refined.clear()
        self.committed_ms = max(self.committed_ms, eou_ms)
        seg = self._segment
        self._segment = None
        if not text or (end - start) < self._min_voiced_ms:
            self.dropped += 1
            if seg is not None and seg.text:
                seg.text = ""
                seg.revision += 1
                seg.partial = False
                self._on_partial(seg)  # retract the partial transcript
            return
        if seg is None:
            self._seg_counter += 1
            seg = Segment(id=f"u{self._seg_counter}")
        seg.text = text
        seg.revision += 1
        seg.partial = False
        seg.start_ms, seg.end_ms = start, end
        seg.words = words
        self.utterances += 1
        self._on_partial(seg)
        self._on_utterance(Utterance(seg.id, text, start, end, eou_ms, len(indexes), words))
