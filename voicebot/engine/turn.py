"""One bot answer and the latency of its stages."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from voicebot.engine.speculation import Prepared


@dataclass(slots=True)
class Turn:
    """One bot answer and its latency, broken into stages (monotonic seconds)."""

    id: str
    trigger: str  # "greeting" | "utterance" | "text" | "silence"
    caller_text: str = ""
    speech_end_ms: int | None = None  # call audio time the caller stopped speaking
    stt_wait_ms: float = 0.0  # end of speech -> utterance complete (EOU pause + recognizer)
    t_input: float = 0.0  # utterance complete / text received
    t_first_text: float | None = None
    t_first_sentence: float | None = None
    t_first_byte: float | None = None
    t_first_play: float | None = None
    llm_wait_ms: float = 0.0
    tts_wait_ms: float = 0.0
    text: list[str] = field(default_factory=list)
    audio_start_ms: int | None = None  # session ms when bot audio started
    hangup: str | None = None
    prepared: Prepared | None = None  # a speculative reply waiting for the final's decision
    decision: Hashable | None = None  # the dialogue's decision for this turn
    speculation: str | None = None  # "hit" | "miss" when a prepared reply was there

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
