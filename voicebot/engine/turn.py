"""One bot answer: its trigger, what was generated, what was actually played, timing.

`Turn.spoken` is the playback ledger: each sentence with its position on the
transport's playout timeline (ms of bot audio queued since the call began, the same
scale as `Playout.played_ms()`). When a reply is cut — barge-in, a newer input — the
played position says how much of it the caller heard; that, not the generated text,
goes into the transcript, the call record and the dialogue's history.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from voicebot.engine.speculation import Prepared


@dataclass(slots=True)
class SpokenSentence:
    """A sentence whose audio was queued: [start_ms, end_ms) on the playout timeline."""

    text: str
    start_ms: float
    end_ms: float
    complete: bool = False  # all its audio has been queued (end_ms is final)


def heard_text(sentences: Sequence[SpokenSentence], played_ms: float) -> str:
    """The text the caller heard when playback stood at `played_ms`.

    Whole sentences played in full; of the sentence playing, the words whose share of
    its audio (by character length, the TTS audio being roughly uniform in time per
    character) had finished playing."""
    out: list[str] = []
    for s in sentences:
        if played_ms >= s.end_ms - 1:
            out.append(s.text)
            continue
        if played_ms <= s.start_ms or s.end_ms <= s.start_ms:
            break
        share = (played_ms - s.start_ms) / (s.end_ms - s.start_ms)
        words = s.text.split()
        total = sum(len(w) + 1 for w in words)
        kept: list[str] = []
        acc = 0
        for w in words:
            acc += len(w) + 1
            if acc / total > share:
                break
            kept.append(w)
        if kept:
            out.append(" ".join(kept))
        break
    return " ".join(t.strip() for t in out if t.strip())


Status = Literal["pending", "played", "interrupted", "cancelled"]


@dataclass(slots=True)
class Turn:
    """One bot answer and its latency, broken into stages (monotonic seconds)."""

    id: str
    trigger: str  # "greeting" | "utterance" | "text" | "silence"
    caller_text: str = ""
    stt_wait_ms: float = 0.0  # end of speech -> utterance complete (EOU pause + recognizer)
    t_input: float = 0.0  # utterance complete / text received
    t_first_text: float | None = None
    t_first_sentence: float | None = None
    t_first_byte: float | None = None
    t_first_play: float | None = None
    llm_wait_ms: float = 0.0
    tts_wait_ms: float = 0.0
    text: list[str] = field(default_factory=list)
    audio_start_ms: int | None = None  # session ms when the turn's first audio played
    audio_end_ms: int | None = None  # session ms when its last heard audio ended
    hangup: str | None = None
    queued_all: bool = False  # every sentence generated and handed to the transport
    spoken: list[SpokenSentence] = field(default_factory=list)
    heard: str | None = None  # set when the turn is settled
    status: Status = "pending"
    prepared: Prepared | None = None  # a speculative reply waiting for the final's decision
    decision: Hashable | None = None  # the dialogue's decision for this turn
    speculation: str | None = None  # "hit" | "miss" when a prepared reply was there

    @property
    def said(self) -> str:
        """Everything the dialogue generated for this turn."""
        return "".join(self.text).strip()

    def latency(self) -> dict[str, float] | None:
        """Stages in ms, or None for a turn that never played. `eou_wait`,
        `llm_first_sentence`, `tts_first_byte` and `engine` add up to `total` (stable
        names: metrics and `voicebot bench` report them)."""
        if self.t_first_play is None or self.t_first_text is None:
            return None
        ms = lambda a, b: round((b - a) * 1000, 2)  # noqa: E731
        first_byte = self.t_first_byte or self.t_first_play
        stages = {
            "eou_to_final": round(self.stt_wait_ms, 2),
            "final_to_first_text": ms(self.t_input, self.t_first_text),
            "first_text_to_first_audio": ms(self.t_first_text, first_byte),
            "first_audio_to_transport": ms(first_byte, self.t_first_play),
        }
        total = round(sum(stages.values()), 2)
        provider = self.stt_wait_ms + self.llm_wait_ms + self.tts_wait_ms
        return {
            **stages,
            "total": total,
            "stt_wait": round(self.stt_wait_ms, 2),
            "llm_wait": round(self.llm_wait_ms, 2),
            "tts_wait": round(self.tts_wait_ms, 2),
            "provider_wait": round(provider, 2),
            "engine": round(max(0.0, total - provider), 2),
            "eou_wait": round(self.stt_wait_ms, 2),
            "llm_first_sentence": round(self.llm_wait_ms, 2),
            "tts_first_byte": round(self.tts_wait_ms, 2),
        }
