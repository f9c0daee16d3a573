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
    reply_gap_ms: 200                     # the caller answers this long after the bot's audio ends
    caller:
      - "plain line"                      # spoken reply_gap_ms after the bot's audio ends
      - {say: "...", after_ms: 150}       # this line's own gap; negative: start that long
                                          #   before the bot finishes (talking over its end)
      - {say: "...", then_pause_ms: 900, say_more: "..."}  # a pause mid-thought
      - {say: "...", barge_in_after_ms: 800}   # interrupt the bot 800 ms into its reply
      - {silence_ms: 9000}                # say nothing for a while
    echo: false                           # true: the bot's audio leaks into the microphone
    factory: chat                         # optional: the dialogue (short name or module:builder)
    echo_gain_db: -6                      # its level in the microphone (0 = as loud as played)
    echo_delay_ms: 30                     # the echo path's delay (device buffers, the room)

People answer about 200 ms after the other side stops talking, so that is the default
gap; the seed's caller waited `echo_tail_ms + 250 ms`, which hid every prompt answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import statistics
import sys
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.clock import RealClock
from voicebot.config import Config, load_config
from voicebot.dialogue import mode_name
from voicebot.dialogue_script import CallerLine, DialogueScript, load_script
from voicebot.emulator.espeak import EspeakSynthesizer
from voicebot.engine.session import CallSession
from voicebot.redact import redact_url
from voicebot.runtime import Runtime
from voicebot.simulation.caller import FRAME_MS, SimulatedCaller
from voicebot.simulation.line import SimulatorTransport

log = logging.getLogger(__name__)


__all__ = [
    "FRAME_MS",
    "CallerLine",
    "DialogueScript",
    "SimulatedCaller",
    "SimulationResult",
    "SimulatorTransport",
    "load_script",
    "run_simulation",
]


# ---------------------------------------------------------------------- running


@dataclass
class SimulationResult:
    """One finished simulated call: its summary, session, transport and caller."""

    summary: Mapping[str, Any]
    session: CallSession
    transport: SimulatorTransport
    caller: SimulatedCaller

    def report(self) -> dict[str, Any]:
        """The JSON report of `voicebot simulate --json`: turns, latencies, bookings,
        recognition counters."""
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
        # Each bot turn as the caller heard it: from its first audio to where it ended
        # or was cut, with the text actually played (never what was only generated).
        for t in self.session.turns:
            if t.audio_start_ms is None or not t.heard:
                continue
            turns.append(
                {
                    "role": "bot",
                    "text": t.heard,
                    "start_ms": t.audio_start_ms,
                    "end_ms": t.audio_end_ms if t.audio_end_ms is not None else t.audio_start_ms,
                    **({"status": t.status} if t.status != "played" else {}),
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

        async def voice(text: str | None) -> bytes | None:
            if not text:
                return None
            return await espeak.synthesize(text, female=False, sample_rate=script.sample_rate)

        speech = [(await voice(ln.say), await voice(ln.say_more)) for ln in script.lines]
        transport = SimulatorTransport(
            clock,
            script.sample_rate,
            record=record,
            echo_gain_db=script.echo_gain_db,
            echo_delay_ms=script.echo_delay_ms,
        )
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
    """The human-readable transcript with per-turn latency."""
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
    """`voicebot simulate --dialogue F [--json] [--record OUT] [--speed X] [--store URL]
    [--stt P]`."""
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
