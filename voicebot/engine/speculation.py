"""Speculative replies: the answer is synthesized while the caller's end-of-utterance
pause is still running.

A deterministic dialogue's answer is usually known from the partial transcript well
before the recognizer decides the caller has finished (the EOU pause, 700 ms). Once a
partial has not changed for `engine.speculation_stable_ms` (default 250 ms) and the
caller's own audio has been quiet that long (a partial is also stable between two words
of a sentence still being spoken; synthesizing those would only cost characters), the
dialogue computes its reply in a sandbox (`Speculative.speculate`: nothing committed)
and the first piece of that reply is synthesized into a buffer. When the final arrives,
the dialogue replies for real; if its decision (`last_decision`: for the booking bot the
slots and the transition, not the characters — the final is normalized, the partial is
not) equals the sandbox's and the first piece is the same text, the buffered audio is
played at once (a hit). Otherwise it is thrown away (a miss). LLM dialogues have no
`speculate`, so their turns are never speculated.

TTS is billed per character, so every synthesized character that was not played is
counted (`extra_chars`), next to the characters that were (`spoken_chars`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from dataclasses import asdict, dataclass

from voicebot.clock import Clock
from voicebot.dialogue import Speculative
from voicebot.engine.sentences import first_piece
from voicebot.providers.base import SpeechSynthesizer, SynthesisOptions
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SpeculationStats:
    """Per-call counters (`done` summary, `voicebot bench`)."""

    attempts: int = 0  # prepared replies (synthesis started)
    hits: int = 0  # played at once
    misses: int = 0  # the final's decision or first piece differed: discarded
    superseded: int = 0  # the partial changed again before the final: discarded
    extra_chars: int = 0  # synthesized characters never played
    spoken_chars: int = 0  # characters of every played reply (speculated or not)

    def as_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return asdict(self)


class PreparedAudio:
    """One piece synthesized in the background, replayable by one consumer while the
    synthesis is still streaming."""

    def __init__(self, synth: SpeechSynthesizer, text: str, options: SynthesisOptions) -> None:
        self.text = text
        self.chunks: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(synth, options))

    async def _run(self, synth: SpeechSynthesizer, options: SynthesisOptions) -> None:
        try:
            async for pcm in synth.synthesize(self.text, options):
                self.chunks.append(pcm)
                self._changed.set()
        except Exception as exc:  # surfaces to the consumer, if any
            self.error = exc
        finally:
            self.done = True
            self._changed.set()

    async def stream(self) -> AsyncIterator[bytes]:
        """The audio from its start, as it arrives; raises the synthesis error."""
        i = 0
        while True:
            if i < len(self.chunks):
                i += 1
                yield self.chunks[i - 1]
                continue
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            self._changed.clear()
            await self._changed.wait()

    def cancel(self) -> None:
        """Stop the synthesis."""
        self.task.cancel()


@dataclass(slots=True)
class Prepared:
    """A reply prepared from one stable partial."""

    text: str  # the partial transcript it was computed from
    key: Hashable  # the sandbox's decision
    piece: str  # the first piece, as the engine will cut the real reply
    audio: PreparedAudio


class Speculator:
    """Watches partials, prepares replies, and keeps the counts."""

    def __init__(
        self,
        dialogue: Speculative,
        synth: SpeechSynthesizer,
        options: SynthesisOptions,
        clock: Clock,
        stable_ms: int,
    ) -> None:
        self._dialogue = dialogue
        self._synth = synth
        self._options = options
        self._clock = clock
        self._stable_s = stable_ms / 1000
        self._text: str | None = None
        self._timer: asyncio.Task[None] | None = None
        self._voice_at = clock.monotonic()  # the caller's last voiced frame
        self.prepared: Prepared | None = None
        self.stats = SpeculationStats()

    def on_partial(self, text: str) -> None:
        """The caller's partial transcript (already joined with any held words)."""
        text = text.strip()
        if not text or text == self._text:
            return
        self._text = text
        self._cancel_timer()
        # What was prepared stays until a newer preparation replaces it: the final may
        # still carry the same decision (it is compared by decision, not by text).
        self._timer = asyncio.get_running_loop().create_task(self._after_stable(text))

    @property
    def watching(self) -> bool:
        """A partial is waiting to become stable (the session then reports voice)."""
        return self._timer is not None and not self._timer.done()

    def voice(self) -> None:
        """The caller's audio is voiced now (local energy): not a pause yet."""
        self._voice_at = self._clock.monotonic()

    def take(self) -> Prepared | None:
        """The final arrived: stop watching and hand over what was prepared (if any)."""
        self._cancel_timer()
        self._text = None
        prepared, self.prepared = self.prepared, None
        return prepared

    def settle(self, prepared: Prepared, *, hit: bool) -> None:
        """Count a prepared reply's fate; a miss drops its audio."""
        if hit:
            self.stats.hits += 1
            return
        self.stats.misses += 1
        self.stats.extra_chars += len(prepared.piece)
        prepared.audio.cancel()

    def reset(self) -> None:
        """Nothing prepared may be used any more (the turn it was for cannot happen)."""
        self._cancel_timer()
        self._text = None
        if self.prepared is not None:
            self._discard(superseded=True)

    async def _after_stable(self, text: str) -> None:
        await self._clock.sleep(self._stable_s)
        while (quiet := self._clock.monotonic() - self._voice_at) < self._stable_s:
            await self._clock.sleep(self._stable_s - quiet)  # the caller is still talking
        try:
            spec = await self._dialogue.speculate(text)
        except Exception:
            log.exception("speculate() failed; the turn will be answered normally")
            return
        if spec is None or self._text != text:
            return
        piece = first_piece([p for p in spec.parts if isinstance(p, str)])
        if not piece:
            return
        if self.prepared is not None:
            if self.prepared.key == spec.key and self.prepared.piece == piece:
                self.prepared.text = text  # the same reply: keep its audio
                return
            self._discard(superseded=True)
        self.stats.attempts += 1
        audio = PreparedAudio(self._synth, piece, self._options)
        self.prepared = Prepared(text, spec.key, piece, audio)

    def _discard(self, *, superseded: bool) -> None:
        assert self.prepared is not None
        if superseded:
            self.stats.superseded += 1
        self.stats.extra_chars += len(self.prepared.piece)
        self.prepared.audio.cancel()
        self.prepared = None

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer = None

    async def aclose(self) -> None:
        """Stop watching, drop what was prepared, and wait for the timer to end."""
        timer = self._timer
        self.reset()
        await cancel_and_wait(timer)
