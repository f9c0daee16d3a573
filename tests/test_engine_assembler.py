"""The utterance assembler: every SpeechKit event pattern yields exactly one utterance."""

from __future__ import annotations

import pytest

from voicebot.engine.assembler import Utterance, UtteranceAssembler
from voicebot.engine.events import Segment
from voicebot.providers.base import (
    AudioCursors,
    EndOfUtterance,
    Final,
    FinalRefinement,
    Partial,
    StatusCode,
)


class Collector:
    def __init__(self, normalize: bool = True, min_voiced_ms: int = 250) -> None:
        self.segments: list[dict] = []
        self.utterances: list[Utterance] = []
        self.asm = UtteranceAssembler(
            normalize=normalize,
            min_voiced_ms=min_voiced_ms,
            on_partial=lambda s: self.segments.append(Segment(**s.as_dict()).as_dict()),
            on_utterance=self.utterances.append,
        )

    def feed(self, *events) -> None:
        for e in events:
            self.asm.on_event(e)


def final(text: str, idx: int, start: int = 1000, end: int = 2000) -> Final:
    return Final(text, idx, start, end, AudioCursors(final_time_ms=end, final_index=idx))


def eou(ms: int) -> EndOfUtterance:
    return EndOfUtterance(ms, AudioCursors(eou_time_ms=ms))


def test_documented_sequence_prefers_normalized_text() -> None:
    c = Collector()
    c.feed(
        StatusCode("WORKING"),
        Partial(""),
        Partial("запишите меня", 1000, 1500),
        Partial("запишите меня на три", 1000, 1900),
        final("запишите меня на три тридцать", 0, 1000, 2100),
        FinalRefinement("Запишите меня на 3:30", 0),
        eou(2100),
        Partial(""),
        StatusCode("WORKING"),
    )
    assert [u.text for u in c.utterances] == ["Запишите меня на 3:30"]
    u = c.utterances[0]
    assert (u.start_ms, u.end_ms, u.eou_ms, u.finals) == (1000, 2100, 2100, 1)
    # Partial revisions of one segment id, then the locked final revision.
    ids = {s["id"] for s in c.segments}
    assert ids == {"u1"}
    revs = [s["revision"] for s in c.segments]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    assert c.segments[-1]["partial"] is False and c.segments[-1]["text"] == "Запишите меня на 3:30"


def test_two_finals_before_one_eou_make_one_utterance() -> None:
    c = Collector()
    c.feed(
        final("я оплатил", 0, 1000, 1600),
        FinalRefinement("Я оплатил", 0),
        final("полис", 1, 1700, 2100),
        FinalRefinement("полис", 1),
        eou(2100),
    )
    assert [u.text for u in c.utterances] == ["Я оплатил полис"]
    assert c.utterances[0].finals == 2


def test_duplicate_final_and_duplicate_eou_are_ignored() -> None:
    c = Collector(normalize=False)
    f = final("да", 0, 1000, 1400)
    c.feed(f, f, eou(1400), eou(1400), f)
    assert [u.text for u in c.utterances] == ["да"]


def test_empty_final_after_real_one_gives_one_utterance() -> None:
    c = Collector()
    c.feed(
        final("хочу стрижку", 0),
        FinalRefinement("Хочу стрижку", 0),
        final("", 1, 2000, 2000),
        eou(2000),
    )
    assert [u.text for u in c.utterances] == ["Хочу стрижку"]


def test_eou_before_final_quirk() -> None:
    """eou_update arrives first; the final (and its refinement) close the utterance."""
    c = Collector()
    c.feed(
        Partial("завтра в", 1000, 1500),
        eou(2000),
        final("завтра в пятнадцать", 0, 1000, 2000),
        FinalRefinement("Завтра в 15:00", 0),
        Partial(""),
    )
    assert [u.text for u in c.utterances] == ["Завтра в 15:00"]


def test_eou_before_final_without_refinement_completes_on_next_event() -> None:
    c = Collector()
    c.feed(eou(2000), final("завтра", 0, 1000, 2000), StatusCode("WORKING"))
    assert [u.text for u in c.utterances] == ["завтра"]


def test_eou_before_empty_final_is_noise() -> None:
    c = Collector()
    c.feed(eou(2000), final("", 0, 2000, 2000), StatusCode("WORKING"))
    assert c.utterances == []


@pytest.mark.parametrize("text,start,end", [("", 1000, 2000), ("кхм", 1000, 1100)])
def test_noise_filter_drops_empty_and_too_short(text: str, start: int, end: int) -> None:
    c = Collector(min_voiced_ms=250)
    c.feed(Partial(text, start, end) if text else Partial(""), final(text, 0, start, end), eou(end))
    assert c.utterances == []
    assert c.asm.dropped == 1
    if text:  # a shown partial is retracted, so the page does not keep a ghost line
        assert c.segments[-1]["partial"] is False and c.segments[-1]["text"] == ""


def test_consecutive_utterances_get_new_segment_ids_and_commit_point_moves() -> None:
    c = Collector(normalize=False)
    c.feed(final("раз", 0, 1000, 1500), eou(1500))
    assert c.asm.committed_ms == 1500 and c.asm.idle
    c.feed(Partial("два", 3000, 3300))
    assert not c.asm.idle
    c.feed(final("два", 1, 3000, 3500), eou(3500))
    assert [u.segment_id for u in c.utterances] == ["u1", "u2"]
    assert c.asm.committed_ms == 3500


def test_stream_reset_maps_times_and_drops_unfinished_finals() -> None:
    """After a reconnect the replayed audio produces the words again: no doubling."""
    c = Collector(normalize=False)
    c.feed(final("раз", 0, 1000, 1500), eou(1500))
    c.feed(final("полови", 1, 2000, 2400))  # stream dies before the EOU
    c.asm.reset_stream(base_ms=1500)  # the new stream starts at the last EOU
    c.feed(final("половина фразы", 0, 500, 1400), eou(1400))
    assert [u.text for u in c.utterances] == ["раз", "половина фразы"]
    assert (c.utterances[1].start_ms, c.utterances[1].end_ms) == (2000, 2900)


def test_trailing_empty_final_after_the_eou_leaves_the_assembler_idle() -> None:
    """eou_update, then an empty final for the audio it closed (a SpeechKit quirk)."""
    c = Collector()
    c.feed(
        final("да", 0, 1000, 1400),
        FinalRefinement("Да", 0),
        eou(2100),
        Final("", 1, 0, 0, AudioCursors(final_time_ms=2100, final_index=1)),
        StatusCode("WORKING"),
    )
    assert [u.text for u in c.utterances] == ["Да"]
    assert c.asm.idle  # reprompts, rotation and batching depend on this


def test_an_eou_that_closed_nothing_does_not_capture_the_next_utterance() -> None:
    c = Collector(normalize=False)
    c.feed(eou(2000))  # an EOU on silence
    c.feed(final("завтра", 0, 5000, 5600), eou(6300))
    assert [(u.text, u.eou_ms) for u in c.utterances] == [("завтра", 6300)]
