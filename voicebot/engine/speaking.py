"""Speech output of a call: reply sentences become audio, in order, overlapped.

`CallSession` mixes this in. The next sentence is synthesized while the current one
streams; the first piece of a turn may instead come from a speculative reply prepared
before the caller finished (`voicebot.engine.speculation`).
"""

from __future__ import annotations

import asyncio
from collections import deque

from voicebot.clock import Clock
from voicebot.engine.aec import EchoCanceller
from voicebot.engine.echo_gate import EchoGate
from voicebot.engine.metering import MeteredLanguageModel
from voicebot.engine.recognition import ContinuousRecognizer
from voicebot.engine.speculation import PreparedAudio, Speculator
from voicebot.engine.turn import SpokenSentence, Turn
from voicebot.providers.base import SpeechSynthesizer, SynthesisOptions
from voicebot.transports.base import CallTransport

SYNTH_AHEAD = 2  # sentences synthesized ahead of the one playing
PLAYED_POLL_S = 0.05  # how often the end of playback is checked near it (s)
PLAYED_SLEEP_CAP_S = 0.5  # the longest sleep towards a playout clock's end (s): a playback
# that ends early (the far end reports it ran dry) is seen within this


class SpeechOutput:
    """The `_speak` half of a call session (attributes provided by `CallSession`)."""

    transport: CallTransport
    clock: Clock
    gate: EchoGate
    aec: EchoCanceller | None
    recognition: ContinuousRecognizer
    speculator: Speculator | None
    _synth: SpeechSynthesizer
    _tts_options: SynthesisOptions
    _llm_meter: MeteredLanguageModel | None
    _ended: str | None

    def _bot_started(self) -> None:
        raise NotImplementedError

    def _ms(self) -> int:
        raise NotImplementedError

    async def _speak(self, turn: Turn, sentences: asyncio.Queue[str | None]) -> None:
        """Play sentences in order; the next one is synthesized while this one streams,
        so a short sentence followed by a slow synthesis leaves no gap."""
        ahead: deque[tuple[asyncio.Task[None], asyncio.Queue[bytes | None], float, str]] = deque()
        playout = self.transport.playout
        more = True
        try:
            while True:
                while more and len(ahead) < SYNTH_AHEAD and (not ahead or not sentences.empty()):
                    sentence = await sentences.get()
                    if sentence is None:
                        more = False
                        break
                    if turn.t_first_sentence is None:
                        turn.t_first_sentence = self.clock.monotonic()
                        if self._llm_meter is not None:  # LLM time that delayed the first audio
                            turn.llm_wait_ms = self._llm_meter.wait_ms
                    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
                    prepared = self._prepared_audio(turn, sentence)
                    task = asyncio.get_running_loop().create_task(
                        self._replay(prepared, chunks)
                        if prepared is not None
                        else self._synthesize(sentence, chunks)
                    )
                    if self.speculator is not None:
                        self.speculator.stats.spoken_chars += len(sentence)
                    ahead.append((task, chunks, self.clock.monotonic(), sentence))
                if not ahead:
                    return
                task, chunks, requested, text = ahead[0]
                entry: SpokenSentence | None = None
                while (pcm := await chunks.get()) is not None:
                    now = self.clock.monotonic()
                    if turn.t_first_byte is None:  # synthesis time that delayed the first audio
                        turn.tts_wait_ms = (now - requested) * 1000
                        turn.t_first_byte = now
                    if not self.gate.bot_audible:
                        self._bot_started()
                    if turn.audio_start_ms is None:  # it plays after what is still queued
                        lead = max(0.0, playout.queued_ms() - playout.played_ms())
                        turn.audio_start_ms = self._ms() + round(lead)
                    if entry is None:  # the playback ledger: where this sentence plays
                        entry = SpokenSentence(text, playout.queued_ms(), playout.queued_ms())
                        turn.spoken.append(entry)
                    if self.aec is not None:
                        self.aec.far_end(pcm)  # the canceller's reference
                    await self.transport.play(pcm)
                    entry.end_ms = playout.queued_ms()
                    if turn.t_first_play is None:
                        turn.t_first_play = self.clock.monotonic()
                if entry is not None:  # its words' call times, for the echo text check
                    entry.complete = True
                    lag = self.recognition.fed_ms - playout.played_ms()
                    self.gate.bot_said(text, round(entry.start_ms + lag), round(entry.end_ms + lag))
                ahead.popleft()
                await task  # re-raises a synthesis error
        finally:
            for task, *_ in ahead:
                task.cancel()

    async def _wait_played(self, until_ms: float | None = None) -> None:
        """Until playback stops (or reaches `until_ms` on the playout timeline)."""
        playout = self.transport.playout
        # A playout clock (Voximplant, the simulator) knows when the audio it has will
        # end: sleep until just before that instead of polling all along (a wake-up every
        # 50 ms of every reply of every call). Acknowledged playouts end when the far end
        # says so, which no estimate predicts: those are polled.
        clock_driven = getattr(playout, "clock_driven", False)
        while playout.is_playing() and self._ended is None:
            played = playout.played_ms()
            if until_ms is not None and played >= until_ms - 0.5:
                return
            wait_s = PLAYED_POLL_S
            if clock_driven:
                end_ms = playout.queued_ms()
                if until_ms is not None:
                    end_ms = min(until_ms, end_ms)
                wait_s = min(
                    PLAYED_SLEEP_CAP_S, max(PLAYED_POLL_S, (end_ms - played) / 1000 - PLAYED_POLL_S)
                )
            await self.clock.sleep(wait_s)

    def _prepared_audio(self, turn: Turn, sentence: str) -> PreparedAudio | None:
        """The speculative audio for this turn's first piece, when the final's decision
        and the piece's text are the ones it was prepared for (a hit)."""
        prepared, turn.prepared = turn.prepared, None
        if prepared is None or self.speculator is None:
            return None
        hit = (
            turn.decision is not None
            and turn.decision == prepared.key
            and sentence == prepared.piece
            and prepared.audio.error is None
        )
        self.speculator.settle(prepared, hit=hit)
        turn.speculation = "hit" if hit else "miss"
        return prepared.audio if hit else None

    async def _replay(self, audio: PreparedAudio, out: asyncio.Queue[bytes | None]) -> None:
        try:
            async for pcm in audio.stream():
                out.put_nowait(pcm)
        finally:
            out.put_nowait(None)

    async def _synthesize(self, sentence: str, out: asyncio.Queue[bytes | None]) -> None:
        try:
            async for pcm in self._synth.synthesize(sentence, self._tts_options):
                out.put_nowait(pcm)
        finally:
            out.put_nowait(None)
