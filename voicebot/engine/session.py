"""A call, top to bottom: caller audio becomes text, text becomes a reply, the reply
becomes audio.

    transport ──feed_audio──▶ EchoCanceller ──▶ ContinuousRecognizer ──▶ UtteranceAssembler
                  (the audio we play is its reference)                          │ words
                                   EchoGate (drop the bot's own voice, word by word)
                                                                  ▼
    transport ◀──play── synthesizer ◀──sentences── Dialogue.reply(text)

`run()` is the whole flow: greet, then take one input at a time (a caller utterance,
typed text, a silence timeout) and answer it. Each answer is a turn task: the dialogue
streams reply text, which is cut into sentences and synthesized one by one, so the
first sentence plays while the rest is still being generated. A newer utterance cancels
a turn that has not started speaking; in barge-in mode caller speech also stops one
that has. What the caller heard — not what was generated — is what a turn leaves in
the transcript (turn_taking.py). The transport, providers and dialogue are all injected, so the same session
runs the browser demo, both telephony bridges, the simulator and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from voicebot.clock import Clock
from voicebot.config import EngineSettings
from voicebot.dialogue import Dialogue, DialogueAction, Notice, ReplyPart, TranscriptLine
from voicebot.engine.aec import EchoCanceller
from voicebot.engine.assembler import Utterance, UtteranceAssembler
from voicebot.engine.continuation import ContinuationWait
from voicebot.engine.echo_gate import EchoGate
from voicebot.engine.events import EventLog, Segment
from voicebot.engine.metering import MeteredLanguageModel
from voicebot.engine.notice import NoticeGuard
from voicebot.engine.onset import OnsetDetector
from voicebot.engine.recognition import ContinuousRecognizer
from voicebot.engine.sentences import SentenceSplitter, needs_space
from voicebot.engine.speaking import SpeechOutput
from voicebot.engine.speculation import Speculator
from voicebot.engine.summary import call_summary
from voicebot.engine.turn import Turn
from voicebot.engine.turn_taking import Retry, TurnTaking
from voicebot.ops.busy import farewell
from voicebot.ops.logs import bind_turn
from voicebot.providers.base import (
    ProviderError,
    RecognitionOptions,
    SpeechRecognizer,
    SpeechSynthesizer,
    SynthesisOptions,
)
from voicebot.tasks import cancel_and_wait
from voicebot.transports.base import CallTransport

log = logging.getLogger(__name__)

TICK_S = 0.2


@dataclass(slots=True)
class _CallerText:
    text: str


@dataclass(slots=True)
class _Silence:
    count: int


@dataclass(slots=True)
class _End:
    reason: str


@dataclass(slots=True)
class _ContinuationDue:
    """The wait for the rest of a held phrase ran out."""


class CallSession(SpeechOutput, TurnTaking):
    """A whole call: recognition, dialogue and synthesis on one transport."""

    def __init__(
        self,
        *,
        transport: CallTransport,
        recognizer: SpeechRecognizer,
        synthesizer: SpeechSynthesizer,
        dialogue: Dialogue,
        settings: EngineSettings,
        clock: Clock,
        stt_options: RecognitionOptions,
        tts_options: SynthesisOptions,
        llm_meter: MeteredLanguageModel | None = None,
        session_id: str | None = None,
    ) -> None:
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.transport = transport
        self.dialogue = dialogue
        # Unset turn-taking values take the channel's defaults (config.CHANNEL_DEFAULTS).
        settings = settings.for_channel(getattr(transport, "kind", ""))
        self.settings = settings
        self.clock = clock
        self._synth = synthesizer
        self._tts_options = tts_options
        self._llm_meter = llm_meter
        self.events = EventLog(self.session_id, transport.send_event)
        self.gate = EchoGate(
            int(settings.echo_tail_ms or 0),
            text_min_words=settings.echo_text_min_words,
            text_window_ms=settings.echo_text_window_ms,
        )
        self.aec: EchoCanceller | None = (
            EchoCanceller(transport.sample_rate) if settings.echo_canceller == "webrtc" else None
        )
        self.assembler = UtteranceAssembler(
            normalize=stt_options.normalize,
            min_voiced_ms=settings.min_voiced_ms,
            on_partial=self._on_segment,
            on_utterance=self._on_utterance,
        )
        self.recognition = ContinuousRecognizer(
            recognizer, stt_options, settings, clock, self.assembler, self._on_stt_error
        )
        self._inbox: asyncio.Queue[
            Utterance | _CallerText | _Silence | _End | _ContinuationDue | Retry
        ] = asyncio.Queue()
        self._pending_join: str | None = None  # caller text whose answer a continuation cancelled
        self._final_seg: Segment | None = None
        # Speculative replies (deterministic dialogues only) and «waiting for the rest».
        self.speculator: Speculator | None = None
        if settings.speculation and callable(getattr(dialogue, "speculate", None)):
            self.speculator = Speculator(
                dialogue,  # type: ignore[arg-type]
                synthesizer,
                tts_options,
                clock,
                settings.speculation_stable_ms,
            )
        self._voice = OnsetDetector(transport.sample_rate)  # caller pauses, for speculation
        self.continuation = ContinuationWait(
            settings.continuation_wait_ms,
            clock,
            transport.sample_rate,
            lambda: self._inbox.put_nowait(_ContinuationDue()),
        )
        self._turn_task: asyncio.Task[None] | None = None
        self._playing_out: set[asyncio.Task[None]] = set()  # older turns still playing
        self._turn_seq = 0
        self._t0 = clock.monotonic()
        self._last_activity = self._t0
        self._silences = 0
        self._ended: str | None = None
        self.turns: list[Turn] = []
        self.transcript: list[TranscriptLine] = []
        self.actions: list[DialogueAction] = []
        self.ignored_utterances: list[Utterance] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.notice = NoticeGuard(transport.playout, clock, self._inbox.put_nowait, self._spawn)

    # ================================================================== the call

    async def run(self) -> Mapping[str, Any]:
        """Greet, then answer each input until the call ends; returns the summary (the
        `done` event's)."""
        ticker = asyncio.get_running_loop().create_task(self._tick(), name="session-ticker")
        reason = "error"
        try:
            greeting = Turn(self._next_turn_id(), "greeting")
            self.notice.arm(greeting)
            self._start_turn(greeting, self.dialogue.greet())
            while True:
                item = await self._inbox.get()
                if isinstance(item, _End):
                    reason = item.reason
                    break
                if self.notice.active():  # answered once the notice has played in full
                    self.notice.hold(item)
                    continue
                if isinstance(item, Utterance):
                    self._on_caller_utterance(self.continuation.join(item))
                elif isinstance(item, Retry):
                    turn = Turn(self._next_turn_id(), "utterance", caller_text=item.text)
                    self._start_turn(turn, self.dialogue.reply(item.text))
                elif isinstance(item, _ContinuationDue):
                    if (held := self.continuation.expire()) is not None:
                        self._answer_utterance(held)
                elif isinstance(item, _CallerText):
                    turn = Turn(self._next_turn_id(), "text", caller_text=item.text)
                    self._hear(item.text, self._ms())
                    await self.events.transcript(self._typed_segment(item.text))
                    self._start_turn(turn, self.dialogue.reply(item.text))
                elif isinstance(item, _Silence):
                    self._start_turn(
                        Turn(self._next_turn_id(), "silence"), self.dialogue.on_silence(item.count)
                    )
        finally:
            ticker.cancel()
            for task in list(self._playing_out):
                await cancel_and_wait(task)
            self.continuation.close()
            if self.speculator is not None:
                self.speculator.reset()
            await self._cancel_turn()
            await self.recognition.aclose()
        return await self._finish(reason)

    def _unfinished(self, text: str) -> bool:
        """The dialogue's `expects_more(text)`, when waiting for the rest is on."""
        expects_more = getattr(self.dialogue, "expects_more", None)
        if not self.continuation.enabled or expects_more is None:
            return False
        try:
            return bool(expects_more(text))
        except Exception:
            log.exception("expects_more failed")
            return False

    def _on_caller_utterance(self, utt: Utterance) -> None:
        """Answer a caller utterance, or hold it while it is visibly unfinished."""
        if self._unfinished(utt.text):
            if self.speculator is not None:
                self.speculator.reset()  # prepared for a turn that is not answered
            self.continuation.hold(utt)
            return
        self._answer_utterance(utt)

    def _answer_utterance(self, utt: Utterance) -> None:
        self._hear(utt.text, utt.start_ms)
        text = utt.text
        if self._pending_join:  # the caller went on before the answer played
            text = f"{self._pending_join} {text}"
            self._pending_join = None
        turn = Turn(self._next_turn_id(), "utterance", caller_text=text)
        turn.stt_wait_ms = max(0.0, float(self.recognition.fed_ms - utt.end_ms))
        if self.speculator is not None and text == utt.text:
            turn.prepared = self.speculator.take()
        # The caller spoke: a reply still playing stops (in gate mode this is speech
        # held for the end of the sentence playing).
        self._start_turn(turn, self.dialogue.reply(text), cut=True)

    def _start_turn(
        self, turn: Turn, parts: AsyncIterator[ReplyPart], *, cut: bool = False
    ) -> None:
        """One turn at a time: a newer input replaces the answer still in progress,
        and the part of it already queued for playback. An answer fully queued plays
        out before the new one, unless `cut` (the caller spoke: stop talking)."""
        if self._turn_task is not None and not self._turn_task.done():
            last = self.turns[-1]
            if last.hangup:
                return  # the dialogue is saying goodbye: the call is ending
            if last.queued_all and not cut:
                # Fully generated and queued: it plays out, then settles on its own,
                # and the new answer is queued behind it.
                self._playing_out.add(self._turn_task)
                self._turn_task.add_done_callback(self._playing_out.discard)
            else:
                self._turn_task.cancel()
                if self.transport.playout.is_playing():
                    self._clear_playback()
        turn.t_input = self.clock.monotonic()
        self.turns.append(turn)
        self._turn_task = asyncio.get_running_loop().create_task(
            self._answer(turn, parts), name=f"turn-{turn.id}"
        )
        # A task cancelled before it ever ran skips its handlers: settle it here.
        self._turn_task.add_done_callback(lambda _: self._emit_soon_settled(turn))

    async def _answer(self, turn: Turn, parts: AsyncIterator[ReplyPart]) -> None:
        """Dialogue text -> sentences -> synthesis -> transport, overlapped."""
        bind_turn(turn.id)
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.get_running_loop().create_task(self._speak(turn, sentences))
        splitter = SentenceSplitter()
        if self._llm_meter is not None:
            self._llm_meter.reset()
        try:
            async for part in parts:
                if isinstance(part, DialogueAction):
                    await self._act(turn, part)
                    continue
                if not part:
                    continue
                if notice := isinstance(part, Notice):  # a sentence of its own, protected
                    if rest := splitter.flush():
                        sentences.put_nowait(rest)
                    self.notice.protect(turn, part.strip())
                    sentences.put_nowait(part.strip())
                else:
                    self.notice.first_text(turn)
                if turn.t_first_text is None:
                    turn.t_first_text = self.clock.monotonic()
                    turn.decision = getattr(self.dialogue, "last_decision", None)
                if turn.text and needs_space(turn.text[-1], part):
                    part = " " + part
                turn.text.append(part)
                await self.events.emit("bot_text", turn_id=turn.id, text=part, final=False)
                for sentence in [] if notice else splitter.push(part):
                    sentences.put_nowait(sentence)
            if rest := splitter.flush():
                sentences.put_nowait(rest)
            sentences.put_nowait(None)
            await speaker
            turn.queued_all = True
            if (latency := turn.latency()) is not None:
                await self.events.emit(
                    "turn",
                    turn_id=turn.id,
                    trigger=turn.trigger,
                    latency_ms=latency,
                    speculation=turn.speculation,
                )
            await self._wait_played(turn.spoken[-1].end_ms if turn.spoken else 0.0)
            await self._announce(self._settle(turn))
        except asyncio.CancelledError:
            heard = self._settle(turn)  # before any await: the played position is the cut
            await cancel_and_wait(speaker)
            await self._announce(heard)
            raise
        except ProviderError as e:
            self._emit_soon_settled(turn)
            await cancel_and_wait(speaker)
            log.warning("turn %s failed: %r", turn.id, e)
            await self.events.emit("error", code=e.code, message="the reply could not be produced")
        except Exception:
            # A bug in a dialogue must cost one answer, not the call.
            self._emit_soon_settled(turn)
            await cancel_and_wait(speaker)
            log.exception("turn %s crashed", turn.id)
            await self.events.emit(
                "error", code="INTERNAL", message="the reply could not be produced"
            )
        finally:
            self._last_activity = self.clock.monotonic()
            if turn.prepared is not None and self.speculator is not None:
                self.speculator.settle(turn.prepared, hit=False)  # never got to play
                turn.prepared = None
        if turn.hangup:  # also when the goodbye could not be synthesized
            await self._hang_up(turn.hangup)

    async def _hang_up(self, reason: str) -> None:
        """The dialogue ends the call: let the goodbye play out, then hang up."""
        await self._wait_played()
        if self._ended is not None:
            return  # the caller left first
        # Claim the reason before the transport closes: its own end() must not rename it.
        self._ended = f"bot_hangup:{reason}"
        try:
            await self.transport.hangup(reason)
        finally:
            self._inbox.put_nowait(_End(self._ended))

    async def _act(self, turn: Turn, action: DialogueAction) -> None:
        self.actions.append(action)
        if action.kind == "hangup":
            turn.hangup = str(action.data.get("reason", "dialogue"))
        elif action.kind == "booking":
            await self.events.emit("booking", booking=dict(action.data))
            return
        await self.events.emit("action", kind=action.kind, data=dict(action.data))

    @property
    def busy(self) -> bool:
        """The bot is answering or its audio is still playing."""
        turn_running = self._turn_task is not None and not self._turn_task.done()
        return turn_running or self.transport.playout.is_playing()

    @property
    def ended(self) -> str | None:
        """Why the call ended (None while it runs)."""
        return self._ended

    # ================================================================== input

    def feed_audio(self, pcm: bytes) -> None:
        """Caller audio at the transport's rate. Called per frame: keep it cheap."""
        if self.aec is not None:
            pcm = self.aec.process(pcm)  # a pass-through unless bot audio is recent
        self.recognition.feed(pcm)
        if self.continuation.held is not None:
            self.continuation.feed(pcm)
        if self.speculator is not None and self.speculator.watching:
            if self._voice.voiced(pcm):
                self.speculator.voice()
        if self.gate.bot_audible and not self.transport.playout.is_playing():
            self._bot_stopped()
            self._last_activity = self.clock.monotonic()

    def feed_text(self, text: str) -> None:
        """A typed caller utterance (browser demo, tests)."""
        if text.strip() and self._ended is None:
            self._inbox.put_nowait(_CallerText(text.strip()))

    def feed_dtmf(self, digit: str) -> None:
        """One DTMF digit (0-9, *, #, A-D)."""
        self.events.counts["dtmf"] += 1
        # Digits are passed as text so a dialogue can use them ("1" = yes, etc.).
        self.feed_text(digit)

    def say_goodbye(self, text: str, reason: str) -> None:
        """Server drain: `text` as the last turn (replacing one in progress), then hang up."""
        if self._ended is None:
            self._start_turn(Turn(self._next_turn_id(), "shutdown"), farewell(text, reason))

    def end(self, reason: str = "caller_hangup") -> None:
        """The far end is gone (or the call is over): the call wraps up and `run` returns."""
        if self._ended is None:
            self._ended = reason
            self._inbox.put_nowait(_End(reason))

    def _on_stt_error(self, err: ProviderError) -> None:
        self._emit_soon("error", code=err.code, message="speech recognition is unavailable")

    # ================================================================== housekeeping

    async def _tick(self) -> None:
        """Keep-alive silence, playback-end detection and the caller-silence timer."""
        while True:
            await self.clock.sleep(TICK_S)
            self.recognition.tick()
            playing = self.transport.playout.is_playing()
            if self.gate.bot_audible and not playing:
                self._bot_stopped()
                self._last_activity = self.clock.monotonic()
            busy = playing or (self._turn_task is not None and not self._turn_task.done())
            if self.continuation.held is not None:  # waiting for the rest, not silence
                self.continuation.check(recognizer_idle=self.assembler.idle)
                busy = True
            if busy or not self.assembler.idle:
                self._last_activity = self.clock.monotonic()
                continue
            if self.clock.monotonic() - self._last_activity >= self.settings.silence_timeout_s:
                self._silences += 1
                self._last_activity = self.clock.monotonic()
                self._inbox.put_nowait(_Silence(self._silences))

    def _bot_started(self) -> None:
        self.gate.bot_started(self.recognition.fed_ms)
        # In barge-in mode the caller's first words must reach the recognizer unbatched.
        self.recognition.low_latency = self.settings.barge_in

    def _bot_stopped(self) -> None:
        self.gate.bot_stopped(self.recognition.fed_ms)
        self.recognition.low_latency = False

    async def _cancel_turn(self) -> None:
        await cancel_and_wait(self._turn_task)

    async def _finish(self, reason: str) -> Mapping[str, Any]:
        try:
            dialogue_summary = dict(await self.dialogue.close(self.transcript, reason))
        except Exception:
            log.exception("dialogue close failed")
            dialogue_summary = {}
        summary = call_summary(self, reason, dialogue_summary)
        await self.events.emit("done", summary=summary)
        return summary

    # ================================================================== helpers

    def _ms(self) -> int:
        return int((self.clock.monotonic() - self._t0) * 1000)

    def _next_turn_id(self) -> str:
        self._turn_seq += 1
        return f"t{self._turn_seq}"

    def _hear(self, text: str, at_ms: int) -> None:
        self._last_activity = self.clock.monotonic()
        self.transcript.append(TranscriptLine("caller", text, at_ms))

    def _typed_segment(self, text: str) -> Segment:
        seg_id = f"x{len(self.transcript)}"
        return Segment(
            seg_id, text, revision=1, partial=False, start_ms=self._ms(), end_ms=self._ms()
        )

    def _emit_soon(self, type_: str, **fields: Any) -> None:
        """Emit from a sync callback without blocking the reader on a slow socket."""
        self._spawn(self.events.emit(type_, **fields))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("background task failed: %r", exc)  # e.g. clear() on a closed socket
