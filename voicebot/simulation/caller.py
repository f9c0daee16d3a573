"""The simulator's caller: speaks the script into a session as a steady 20 ms
microphone stream, answering `reply_gap_ms` after the bot's audio ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from voicebot.clock import Clock
from voicebot.dialogue_script import DialogueScript
from voicebot.engine.session import CallSession
from voicebot.simulation.line import SimulatorTransport

FRAME_MS = 20
REPLY_TIMEOUT_S = 30.0  # simulated seconds to wait for a bot reply before moving on


class SimulatedCaller:
    """Speaks the script into the session as a steady 20 ms microphone stream."""

    def __init__(
        self,
        session: CallSession,
        transport: SimulatorTransport,
        clock: Clock,
        speech: Sequence[tuple[bytes | None, bytes | None]],
        script: DialogueScript,
        *,
        record: bool = False,
    ) -> None:
        self.session = session
        self.transport = transport
        self.clock = clock
        self.script = script
        self._speech = list(speech)
        self._frame_bytes = transport.sample_rate * 2 * FRAME_MS // 1000
        self._speaking = bytearray()
        self._speak_at = 0.0  # monotonic time the current speech starts
        self._done_speaking = asyncio.Event()
        self._record = record
        self.mic = bytearray()
        self.spoken: list[tuple[str, float, float]] = []  # text, start_ms, end_ms

    async def microphone(self) -> None:
        """Frames on absolute deadlines: a stall is caught up, never stretched."""
        t_next = self.clock.monotonic()
        silence = bytes(self._frame_bytes)
        while self.session.ended is None:
            # A frame is the audio of its own 20 ms on the microphone's timeline: speech
            # that starts at t goes in no earlier frame, even when the loop runs late
            # and sends frames in a burst.
            if self._speaking and t_next >= self._speak_at - FRAME_MS / 2000:
                frame = bytes(self._speaking[: self._frame_bytes]).ljust(self._frame_bytes, b"\0")
                del self._speaking[: self._frame_bytes]
                if not self._speaking:
                    self._done_speaking.set()
            else:
                frame = silence
            if self.script.echo:
                # The frame's place on the sample-exact microphone timeline (its deadline),
                # not the jittery moment the loop got to it: a real device captures
                # continuously, and a canceller cannot follow an echo that slips.
                frame_start = self.transport.ms_at(t_next)
                echo = self.transport.echo_frame(frame_start, len(frame))
                if echo is not None:
                    mix = np.frombuffer(frame, "<i2").astype(np.int32) + np.frombuffer(echo, "<i2")
                    frame = np.clip(mix, -32768, 32767).astype("<i2").tobytes()
            if self._record:
                self.mic += frame
            self.session.feed_audio(frame)
            t_next += FRAME_MS / 1000
            await self.clock.sleep(t_next - self.clock.monotonic())

    async def converse(self) -> None:
        """Speak the script's lines, each after the bot's reply (or barging in), then hang
        up."""
        lines = self.script.lines
        for i, (line, (pcm, more)) in enumerate(zip(lines, self._speech, strict=True)):
            if self.session.ended is not None:
                return
            if line.silence_ms:
                await self.clock.sleep(line.silence_ms / 1000)
                await self._wait_bot_idle()
                continue
            assert line.say is not None and pcm is not None
            gap_ms = self.script.reply_gap_ms if line.after_ms is None else line.after_ms
            if line.barge_in_after_ms is not None:
                # Interrupt the reply that is playing now (or the next one to start).
                await self._wait_bot_speaking()
                await self.clock.sleep(line.barge_in_after_ms / 1000)
            elif gap_ms < 0:
                await self._wait_bot_ending(-gap_ms)  # start before the bot finishes
            else:
                await self._wait_bot_idle()
                await self.clock.sleep(gap_ms / 1000)
            turns_before = len(self.session.turns)
            await self._say(line.say, pcm)
            if line.say_more and more is not None:
                await self.clock.sleep(line.then_pause_ms / 1000)  # thinking, mid-thought
                await self._say(line.say_more, more)
            nxt = lines[i + 1] if i + 1 < len(lines) else None
            next_barges = nxt is not None and nxt.barge_in_after_ms is not None
            early = nxt is not None and nxt.after_ms is not None and nxt.after_ms < 0
            await self._wait_reply(turns_before, until_playing=next_barges or early)
        await self._wait_bot_idle()

    async def _say(self, text: str, pcm: bytes) -> None:
        self._done_speaking.clear()
        start = self.transport.now_ms()
        self._speak_at = self.clock.monotonic()
        self._speaking += pcm
        await self._done_speaking.wait()
        self.spoken.append((text, start, self.transport.now_ms()))

    async def _wait_bot_idle(self) -> None:
        while self.session.busy and self.session.ended is None:
            await self.clock.sleep(0.05)

    async def _wait_bot_ending(self, lead_ms: int) -> None:
        """Until the bot's answer is fully queued and has at most `lead_ms` left to play."""
        playout = self.transport.playout
        while self.session.busy and self.session.ended is None:
            turn = self.session.turns[-1] if self.session.turns else None
            left = playout.queued_ms() - playout.played_ms()
            if turn is not None and turn.queued_all and left <= lead_ms:
                return
            await self.clock.sleep(0.01)

    async def _wait_bot_speaking(self) -> None:
        deadline = self.clock.monotonic() + REPLY_TIMEOUT_S
        while not self.transport.playout.is_playing() and self.clock.monotonic() < deadline:
            await self.clock.sleep(0.01)

    async def _wait_reply(self, turns_before: int, *, until_playing: bool = False) -> None:
        """Wait for the bot's answer to finish — or just to start, when the next line
        is scripted to interrupt it."""
        deadline = self.clock.monotonic() + REPLY_TIMEOUT_S
        while self.session.ended is None and self.clock.monotonic() < deadline:
            if len(self.session.turns) > turns_before:
                if until_playing and self.transport.playout.is_playing():
                    return
                if not self.session.busy:
                    return
            await self.clock.sleep(0.02)
