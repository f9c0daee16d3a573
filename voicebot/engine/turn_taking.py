"""Caller input against bot output: the echo gate, barge-in, continuations, and the
record of what the caller actually heard.

`TurnTaking` is the half of `CallSession` that decides what recognized speech means
while the bot talks (docs/turn-taking.md):

* echo words are dropped word by word (timing in gate mode, repeated bot text in both
  modes, see `EchoGate`); the rest of an utterance is answered;
* barge-in mode: `barge_in_min_words` caller words in a partial stop the bot at once;
* gate mode on an echo-free line: speech over the bot is answered when the sentence
  playing ends;
* the caller goes on before the answer played: it is cancelled, and the joined
  utterance answered (`_pending_join`);
* every turn is settled once: the transcript, the final `bot_text` and the dialogue's
  `on_unheard` hook get only what was played (`heard_text` at the played position).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicebot.dialogue import TranscriptLine
from voicebot.engine.assembler import Utterance
from voicebot.engine.echo_gate import EchoSplit
from voicebot.engine.events import Segment
from voicebot.engine.turn import Turn, heard_text
from voicebot.providers.base import Word

if TYPE_CHECKING:
    from voicebot.engine.session import CallSession

log = logging.getLogger("voicebot.engine.session")


@dataclass(slots=True)
class Retry:
    """Answer again an utterance whose answer was cancelled for a continuation that
    turned out to be noise."""

    text: str


class TurnTaking:
    """Mixin of `CallSession` (it uses the session's gate, canceller, transport,
    dialogue, event log and inbox)."""

    def _on_segment(self: CallSession, seg: Segment) -> None:
        if not seg.partial:
            if seg.text:
                self._final_seg = seg  # announced by _on_utterance, echo removed
            else:
                self._emit_soon("transcript", segment=seg.as_dict())  # a retraction
                self._retry_pending()
            return
        split = self._split(seg.words, seg.text, seg.start_ms, seg.end_ms)
        if not split.caller:
            return  # the bot's own voice
        self._last_activity = self.clock.monotonic()
        playing = self.transport.playout.is_playing()
        if self.settings.barge_in and playing and len(split.caller) >= self._min_words(seg):
            self._barge_in()
        elif not playing:
            self._continuation_started()
        if seg.text:
            self.continuation.speech()  # the caller goes on: no answer to the first half
            turn_running = self._turn_task is not None and not self._turn_task.done()
            if self.speculator is not None and not turn_running:
                prefix = self.continuation.prefix
                text = f"{prefix} {seg.text}" if prefix else seg.text
                if not self._unfinished(text):  # it would be held, not answered
                    self.speculator.on_partial(text)
        self._emit_soon("transcript", segment=seg.as_dict())

    def _on_utterance(self: CallSession, utt: Utterance) -> None:
        split = self._split(utt.words, utt.text, utt.start_ms, utt.end_ms)
        if split.echo and split.caller:
            # Echo words at the start (the tail) or repeated bot text: drop only those.
            words = split.caller
            self.gate.dropped_words += len(utt.words) - len(words)
            log.info(
                "echo gate: dropped %d echo words of an utterance", len(utt.words) - len(words)
            )
            utt = dataclasses.replace(
                utt,
                text=" ".join(w.text for w in words),
                start_ms=words[0].start_ms,
                words=words,
            )
        elif split.echo:
            self.ignored_utterances.append(utt)
            self.gate.blocked += 1
            log.info("echo gate: ignored an utterance during bot playback")
            self._emit_soon("echo_ignored", segment_id=utt.segment_id, words=len(utt.words))
            self._retry_pending()
            return
        self._announce_final(utt)
        self._silences = 0
        if not self._held_for_later(utt):
            self._inbox.put_nowait(utt)

    def _announce_final(self: CallSession, utt: Utterance) -> None:
        seg = self._final_seg or Segment(utt.segment_id, revision=1, partial=False)
        self._final_seg = None
        seg.text, seg.start_ms = utt.text, utt.start_ms
        self._emit_soon("transcript", segment=seg.as_dict())

    def _split(self: CallSession, words: Any, text: str, start_ms: int, end_ms: int) -> EchoSplit:
        """Echo vs caller words; a recognizer without word times gives one pseudo-word."""
        if not words:
            words = (Word(text, start_ms, end_ms),)
        # The timing rule removes echo: on a line found echo-free there is none, and
        # words spoken over the bot are the caller's (gate mode then holds them).
        timing = not self.settings.barge_in and not self._echo_free()
        return self.gate.split(words, timing=timing)

    def _echo_free(self) -> bool:
        return self.aec is not None and self.aec.echo_free

    def _min_words(self: CallSession, seg: Segment) -> int:
        return self.settings.barge_in_min_words if seg.words else 1

    def _held_for_later(self: CallSession, utt: Utterance) -> bool:
        """Gate mode: the caller spoke over the bot. On a line the canceller found
        echo-free (the microphone stays quiet while the bot talks: telephony, a headset)
        their words are theirs (the timing rule is off there): the bot is not cut
        mid-sentence, it answers them once the sentence playing now has ended. Where
        echo is present, speech over the bot is dropped by the timing rule instead —
        with an `echo_ignored` event, never silently."""
        turn = self.turns[-1] if self.turns else None
        if (
            self.settings.barge_in
            or not self._echo_free()
            or turn is None
            or turn.hangup
            or not self.transport.playout.is_playing()
        ):
            return False
        played = self.transport.playout.played_ms()
        boundary = next((s.end_ms for s in turn.spoken if s.end_ms > played), played)
        log.info("heard the caller during playback: answering after the current sentence")
        self._emit_soon("action", kind="heard_during_playback", data={"text": utt.text})
        self._spawn(self._deliver_at(boundary, utt))
        return True

    async def _deliver_at(self: CallSession, boundary_ms: float, utt: Utterance) -> None:
        playout = self.transport.playout
        while playout.is_playing() and playout.played_ms() < boundary_ms - 1:
            await self.clock.sleep(0.02)
        if self._ended is None:
            self._silences = 0
            self._inbox.put_nowait(utt)

    def _continuation_started(self: CallSession) -> None:
        """The caller speaks again before the answer to their last words has played:
        cancel that answer; the next utterance is answered joined with the last."""
        turn = self.turns[-1] if self.turns else None
        task = self._turn_task
        if (
            turn is None
            or turn.trigger != "utterance"
            or turn.audio_start_ms is not None
            or turn.hangup
            or task is None
            or task.done()
        ):
            return
        log.info("the caller went on before the answer played: waiting for the rest")
        self._pending_join = turn.caller_text
        task.cancel()
        self._emit_soon("action", kind="continuation", data={"cancelled_turn": turn.id})

    def _retry_pending(self: CallSession) -> None:
        """The continuation was noise after all: answer the words we had."""
        if self._pending_join and self.assembler.idle:
            text, self._pending_join = self._pending_join, None
            self._inbox.put_nowait(Retry(text))

    def _barge_in(self: CallSession) -> None:
        """The caller talks over the bot: stop playback and drop the stale answer."""
        if self.turns and self.turns[-1].hangup:
            return  # talking over the goodbye does not bring the call back
        if self.notice.active():
            log.info("barge-in refused: the notice plays in full")
            return
        log.info("barge-in: caller speech during playback")
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        self._clear_playback()
        self._bot_stopped()
        self._emit_soon("action", kind="barge_in", data={})

    def _clear_playback(self: CallSession) -> None:
        if self.aec is not None:
            self.aec.clear()
        self._spawn(self.transport.clear())

    def _settle(self: CallSession, turn: Turn) -> dict[str, Any] | None:
        """Record what of `turn` the caller heard in the transcript and tell the dialogue;
        return the final `bot_text` event's fields (None if already settled).

        Synchronous, so the played position read here is the one at the cut."""
        if turn.status != "pending":
            return None
        said = turn.said
        played = self.transport.playout.played_ms()
        heard = heard_text(turn.spoken, played)
        if heard.split() == said.split():
            heard = said
        turn.heard = heard
        if heard == said and said:
            turn.status = "played"
        else:
            turn.status = "interrupted" if heard else "cancelled"
        if heard:
            turn.audio_end_ms = self._ms()
            line = TranscriptLine("bot", heard, turn.audio_start_ms or self._ms())
            self.transcript.append(line)
            self.transcript.sort(key=lambda x: x.at_ms)
        if heard:
            self._report_played(heard)  # HearsPlayback: what the caller heard, once
        if heard != said and said:
            hook = getattr(self.dialogue, "on_unheard", None)
            if hook is not None:
                try:
                    hook(said, heard)
                except Exception:
                    log.exception("dialogue on_unheard failed")
        if not said:
            return None  # nothing was generated: nothing to report
        extra = {} if turn.status == "played" else {turn.status: True, "generated": said}
        return {"turn_id": turn.id, "text": heard, "final": True, **extra}

    async def _announce(self: CallSession, fields: dict[str, Any] | None) -> None:
        if fields is not None:
            await self.events.emit("bot_text", **fields)

    def _emit_soon_settled(self: CallSession, turn: Turn) -> None:
        if (fields := self._settle(turn)) is not None:
            self._emit_soon("bot_text", **fields)

    def _report_played(self: CallSession, text: str) -> None:
        """Tell the dialogue what the caller heard (`HearsPlayback.on_played`)."""
        hook = getattr(self.dialogue, "on_played", None)
        if hook is None:
            return
        try:
            hook(text)
        except Exception:
            log.exception("dialogue on_played failed")
