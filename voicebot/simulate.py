"""`voicebot simulate`: a whole scripted call through the real clients.

The caller is synthesized with espeak-ng and streamed as 20 ms microphone frames in
real time (or `--speed` times faster) into a `CallSession`, whose recognition, synthesis
and dialogue run exactly as in production. With no Yandex credentials in the
environment they run against the in-process emulator, which does not recognize speech:
each caller line's text is handed to its transcript script, so the recognizer "hears"
exactly what the dialogue file says. With credentials (as `serve`), the clients talk to
`yandex.endpoints` — the real cloud, or any compatible endpoint such as a separately
started emulator or a test's own completion server.

Dialogue file (YAML):
    now: "2026-11-23T10:00:00+03:00"     # the call's clock starts here
    setup: {...}                          # optional domain fixture (e.g. existing bookings)
    caller:
      - "plain line"                      # spoken after the bot finishes speaking
      - {say: "...", barge_in_after_ms: 800}   # interrupt the bot 800 ms into its reply
      - {silence_ms: 9000}                # say nothing for a while
    echo: false                           # true: the bot's audio leaks into the microphone
    factory: chat                         # optional: the dialogue (short name or module:builder)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import statistics
import sys
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.clock import Clock, RealClock
from voicebot.config import Config, load_config
from voicebot.dialogue import mode_name
from voicebot.dialogue_script import CallerLine, DialogueScript, load_script

__all__ = ["CallerLine", "DialogueScript", "load_script", "run_simulation"]
from voicebot.emulator.espeak import EspeakSynthesizer
from voicebot.engine.session import CallSession
from voicebot.redact import redact_url
from voicebot.runtime import Runtime
from voicebot.transports.base import ClockPlayout

log = logging.getLogger(__name__)

FRAME_MS = 20
REPLY_TIMEOUT_S = 30.0  # simulated seconds to wait for a bot reply before moving on


# ---------------------------------------------------------------------- transport


class SimulatorTransport:
    """An in-memory phone line: records what the bot plays, at the time it plays."""

    def __init__(self, clock: Clock, sample_rate: int, record: bool = False) -> None:
        self.clock = clock
        self.sample_rate = sample_rate
        self.playout = ClockPlayout(clock, sample_rate)
        self.events: list[dict[str, Any]] = []
        self.spans: list[list[float]] = []  # [start_ms, end_ms] of contiguous bot audio
        self.clears = 0
        self.hung_up: str | None = None
        self._t0 = clock.monotonic()
        self._bytes_per_ms = sample_rate * 2 / 1000
        self._record = record
        self._bot_audio: list[tuple[float, bytes]] = []
        self._pending: list[tuple[float, bytes]] = []  # (play start ms, pcm) for echo

    def now_ms(self) -> float:
        return (self.clock.monotonic() - self._t0) * 1000

    async def play(self, pcm: bytes) -> None:
        now = self.now_ms()
        start = max(now, self.spans[-1][1]) if self.spans else now
        dur = len(pcm) / self._bytes_per_ms
        if self.spans and start <= self.spans[-1][1] + 1:
            self.spans[-1][1] = start + dur
        else:
            self.spans.append([start, start + dur])
        self.playout.add(len(pcm))
        if self._record:
            self._bot_audio.append((start, pcm))
        self._pending.append((start, pcm))

    async def clear(self) -> None:
        self.clears += 1
        now = self.now_ms()
        self.playout.clear()
        if self.spans and self.spans[-1][1] > now:
            self.spans[-1][1] = now
        self._bot_audio = [(s, p) for s, p in self._bot_audio if s < now]
        self._bot_audio = [
            (s, p[: int((now - s) * self._bytes_per_ms) // 2 * 2]) for s, p in self._bot_audio
        ]
        self._pending = [(s, p) for s, p in self._pending if s < now]

    async def hangup(self, reason: str) -> None:
        self.hung_up = reason

    async def send_event(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event, at_ms=round(self.now_ms())))

    def echo_frame(self, start_ms: float, nbytes: int) -> bytes | None:
        """The bot audio audible in the microphone frame starting at `start_ms`."""
        if not self._pending:
            return None
        out = np.zeros(nbytes // 2, dtype=np.int32)
        end_ms = start_ms + nbytes / self._bytes_per_ms
        hit = False
        keep: list[tuple[float, bytes]] = []
        for s, pcm in self._pending:
            e = s + len(pcm) / self._bytes_per_ms
            if e <= start_ms:
                continue
            keep.append((s, pcm))
            if s >= end_ms:
                continue
            src = np.frombuffer(pcm, dtype="<i2")
            a = int((max(s, start_ms) - s) * self._bytes_per_ms) // 2
            b = int((min(e, end_ms) - s) * self._bytes_per_ms) // 2
            o = int((max(s, start_ms) - start_ms) * self._bytes_per_ms) // 2
            n = min(b - a, len(out) - o)
            if n > 0:
                out[o : o + n] += src[a : a + n] // 2  # the room attenuates the echo
                hit = True
        self._pending = keep
        return np.clip(out, -32768, 32767).astype("<i2").tobytes() if hit else None

    def bot_track(self, total_ms: float) -> bytes:
        buf = bytearray(int(total_ms * self._bytes_per_ms) // 2 * 2)
        for s, pcm in self._bot_audio:
            i = int(s * self._bytes_per_ms) // 2 * 2
            j = min(len(buf), i + len(pcm))
            buf[i:j] = pcm[: j - i]
        return bytes(buf)


# ---------------------------------------------------------------------- the caller


class SimulatedCaller:
    """Speaks the script into the session as a steady 20 ms microphone stream."""

    def __init__(
        self,
        session: CallSession,
        transport: SimulatorTransport,
        clock: Clock,
        speech: Sequence[bytes | None],
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
        self._done_speaking = asyncio.Event()
        self._record = record
        self.mic = bytearray()
        self.spoken: list[tuple[str, float, float]] = []  # text, start_ms, end_ms

    async def microphone(self) -> None:
        """Frames on absolute deadlines: a stall is caught up, never stretched."""
        t_next = self.clock.monotonic()
        silence = bytes(self._frame_bytes)
        while self.session.ended is None:
            if self._speaking:
                frame = bytes(self._speaking[: self._frame_bytes]).ljust(self._frame_bytes, b"\0")
                del self._speaking[: self._frame_bytes]
                if not self._speaking:
                    self._done_speaking.set()
            else:
                frame = silence
            if self.script.echo:
                frame_start = self.transport.now_ms()
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
        gap_s = max(0.6, (self.session.settings.echo_tail_ms + 250) / 1000)
        lines = self.script.lines
        for i, (line, pcm) in enumerate(zip(lines, self._speech, strict=True)):
            if self.session.ended is not None:
                return
            if line.silence_ms:
                await self.clock.sleep(line.silence_ms / 1000)
                await self._wait_bot_idle()
                continue
            assert line.say is not None and pcm is not None
            if line.barge_in_after_ms is not None:
                # Interrupt the reply that is playing now (or the next one to start).
                await self._wait_bot_speaking()
                await self.clock.sleep(line.barge_in_after_ms / 1000)
            else:
                await self._wait_bot_idle()
                await self.clock.sleep(gap_s)
            turns_before = len(self.session.turns)
            await self._say(line.say, pcm)
            next_barges = i + 1 < len(lines) and lines[i + 1].barge_in_after_ms is not None
            await self._wait_reply(turns_before, until_playing=next_barges)
        await self._wait_bot_idle()

    async def _say(self, text: str, pcm: bytes) -> None:
        self._done_speaking.clear()
        start = self.transport.now_ms()
        self._speaking += pcm
        await self._done_speaking.wait()
        self.spoken.append((text, start, self.transport.now_ms()))

    async def _wait_bot_idle(self) -> None:
        while self.session.busy and self.session.ended is None:
            await self.clock.sleep(0.05)

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


# ---------------------------------------------------------------------- running


@dataclass
class SimulationResult:
    summary: Mapping[str, Any]
    session: CallSession
    transport: SimulatorTransport
    caller: SimulatedCaller

    def report(self) -> dict[str, Any]:
        ev = self.transport.events
        turns: list[dict[str, Any]] = []
        for e in ev:
            if e["type"] == "transcript" and not e["segment"]["partial"] and e["segment"]["text"]:
                seg = e["segment"]
                turns.append(
                    {
                        "role": "caller",
                        "text": seg["text"],
                        "start_ms": seg["start_ms"],
                        "end_ms": seg["end_ms"],
                    }
                )
        spans = self.transport.spans
        bot_turns = [t for t in self.session.turns if t.audio_start_ms is not None]
        for i, t in enumerate(bot_turns):
            nxt = bot_turns[i + 1].audio_start_ms if i + 1 < len(bot_turns) else float("inf")
            ends = [e for s, e in spans if t.audio_start_ms - 1 <= s < nxt]
            turns.append(
                {
                    "role": "bot",
                    "text": "".join(t.text).strip(),
                    "start_ms": t.audio_start_ms,
                    "end_ms": round(max(ends) if ends else t.audio_start_ms),
                }
            )
        turns.sort(key=lambda x: x["start_ms"])
        per_turn = [
            {"turn_id": t.id, "trigger": t.trigger, **lat}
            for t in self.session.turns
            if (lat := t.latency()) is not None
        ]
        caller_turns = [x for x in per_turn if x["trigger"] == "utterance"]
        keys = [k for k in (per_turn[0] if per_turn else {}) if k not in ("turn_id", "trigger")]
        medians = (
            {k: round(statistics.median(x[k] for x in caller_turns), 2) for k in keys}
            if caller_turns
            else {}
        )
        return {
            "session_id": self.session.session_id,
            "turns": turns,
            "latency_ms": {"turns": per_turn, "median": medians},
            "bookings": [e["booking"] for e in ev if e["type"] == "booking"],
            "actions": [{"kind": e["kind"], **e["data"]} for e in ev if e["type"] == "action"],
            "events": dict(self.session.events.counts),
            "outcome": self.summary.get("dialogue", {}).get("outcome"),
            "ended": self.summary.get("reason"),
            "ignored_utterances": len(self.session.ignored_utterances),
            "recognition": self.summary.get("recognition", {}),
        }


async def run_simulation(
    script: DialogueScript,
    cfg: Config,
    *,
    speed: float = 1.0,
    store: str | None = None,
    stt_provider: str | None = None,
    record: bool = False,
    runtime: Runtime | None = None,
    on_session: Callable[[CallSession], None] | None = None,
) -> SimulationResult:
    """Run one scripted call. Pass a `runtime` to reuse an emulator across calls, and
    `on_session` to watch the session as it runs (tests)."""
    clock = RealClock(start=script.now, speed=speed)
    own_runtime = runtime is None
    if runtime is None:
        if script.factory:
            cfg = dataclasses.replace(
                cfg, dialogue=dataclasses.replace(cfg.dialogue, factory=script.factory)
            )
        runtime = await Runtime.create(cfg, store=store, stt_provider=stt_provider, clock=clock)
    try:
        if script.setup:
            await runtime.dialogues.prepare(script.setup)
        espeak = EspeakSynthesizer()
        speech = [
            await espeak.synthesize(ln.say, female=False, sample_rate=script.sample_rate)
            if ln.say
            else None
            for ln in script.lines
        ]
        transport = SimulatorTransport(clock, script.sample_rate, record=record)
        session_id = f"sim-{id(transport):x}"
        utterances = list(script.utterances)
        if script.echo:
            utterances = [f"эхо {i}" for i in range(1, 50)] if not utterances else utterances
        session = runtime.open_call(
            transport,
            channel="simulator",
            session_id=session_id,
            clock=clock,
            script=utterances,
            script_id=session_id,
            mode=mode_name(script.factory) if script.factory and not own_runtime else None,
        )
        if on_session is not None:
            on_session(session)
        caller = SimulatedCaller(session, transport, clock, speech, script, record=record)
        loop = asyncio.get_running_loop()
        call = loop.create_task(session.run())
        mic = loop.create_task(caller.microphone())
        talk = loop.create_task(caller.converse())
        done, _ = await asyncio.wait({call, talk}, return_when=asyncio.FIRST_COMPLETED)
        if talk in done:
            talk.result()
            session.end("script_complete")
        else:
            talk.cancel()
        summary = await call
        mic.cancel()
        await asyncio.gather(mic, talk, return_exceptions=True)
        runtime.release_call(session)
        return SimulationResult(summary, session, transport, caller)
    finally:
        if own_runtime:
            await runtime.aclose()


def write_recording(result: SimulationResult, path: str | Path) -> None:
    """Stereo WAV: the caller's microphone on the left, the bot on the right."""
    rate = result.transport.sample_rate
    caller = np.frombuffer(bytes(result.caller.mic), dtype="<i2")
    total_ms = max(
        len(caller) * 1000 / rate, max((e for _, e in result.transport.spans), default=0)
    )
    bot = np.frombuffer(result.transport.bot_track(total_ms), dtype="<i2")
    n = max(len(caller), len(bot))
    stereo = np.zeros((n, 2), dtype="<i2")
    stereo[: len(caller), 0] = caller
    stereo[: len(bot), 1] = bot
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())


def format_transcript(report: Mapping[str, Any]) -> str:
    lat = {x["turn_id"]: x for x in report["latency_ms"]["turns"]}
    lines = []
    for t in report["turns"]:
        who = "CALLER" if t["role"] == "caller" else "BOT   "
        lines.append(
            f"[{t['start_ms'] / 1000:7.2f}s – {t['end_ms'] / 1000:7.2f}s] {who} {t['text']}"
        )
    lines.append("")
    for tid, x in lat.items():
        if x["trigger"] != "utterance":
            continue
        lines.append(
            f"{tid}: total {x['total']:.0f} ms = eou→final {x['eou_to_final']:.0f} + "
            f"final→text {x['final_to_first_text']:.0f} + text→audio {x['first_text_to_first_audio']:.0f} + "
            f"audio→transport {x['first_audio_to_transport']:.0f}  (engine {x['engine']:.1f} ms)"
        )
    med = report["latency_ms"]["median"]
    if med:
        lines.append(f"median total {med['total']:.0f} ms, engine {med['engine']:.1f} ms")
    for b in report["bookings"]:
        lines.append(f"BOOKED: {json.dumps(b, ensure_ascii=False)}")
    return "\n".join(lines)


SANDBOX_STORE = Path("data/simulate.sqlite3")


def sandbox_store(path: Path = SANDBOX_STORE) -> str:
    """A fresh SQLite store for one simulated call.

    A simulation must never put made-up bookings into the salon's real calendar, and
    the same dialogue file must book the same slot every time it is run; so unless
    `--store` names one, each run starts from an empty sandbox store (kept afterwards
    for `voicebot bookings list --store sqlite:///data/simulate.sqlite3`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def run_cli(args: Any) -> int:
    cfg = load_config(args.config)
    script = load_script(args.dialogue)
    store = args.store or sandbox_store()

    async def main() -> SimulationResult:
        return await run_simulation(
            script,
            cfg,
            speed=args.speed,
            store=store,
            stt_provider=args.stt,
            record=bool(args.record),
        )

    if not getattr(args, "log_level", None):  # quiet unless --log-level was asked for
        logging.getLogger().setLevel(logging.WARNING)
    result = asyncio.run(main())
    report = result.report() | {"store": redact_url(store)}
    if args.record:
        write_recording(result, args.record)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_transcript(report))
        where = redact_url(store) + ("" if args.store else " — a sandbox, reset by each run")
        print(f"(store: {where})")
    return 0
