"""The load generator of `voicebot bench`: N concurrent phone-like callers, one process.

Every caller streams 20 ms frames continuously (speech, then silence, like a phone
line), listens to each bot reply at real-time pace, then says its next line. One
shared frame clock drives all callers on absolute deadlines (no task or timer per
frame, so the generator stays cheap and a stall is caught up, not stretched); how late
that clock ran is reported, so a saturated generator is visible in the results.

Measured here, at the client:
- voice-to-voice: the send time of the caller's last voiced frame -> the first bot
  audio frame received after it;
- underruns: bot audio of one reply arriving after the client's playout buffer ran
  dry (ws/voximplant: the server sends ahead of real time, so a gap is a stall);
  AudioSocket frames must arrive every 20 ms: a gap over 60 ms mid-reply is one;
- errors (`error` events, protocol violations, exceptions) and dropped calls
  (connections lost without the call ending properly).

    python -m voicebot.bench.load --transport ws --url ws://127.0.0.1:P/ws \
        --audio caller_16000.json --calls N --duration S --out result.json

Prints `STEADY <unix time>` when all calls are up and `END <unix time>` when the
measured window closes, so the parent can sample the server's CPU over exactly it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from voicebot.bench.audio import conversation, load
from voicebot.bench.caller import (
    Caller,
    FrameClock,
    Stats,
)
from voicebot.bench.callers import AudioSocketCaller, VoximplantCaller, WsCaller

log = logging.getLogger("voicebot.bench.load")


# ============================================================================ ws


# ============================================================================ voximplant


# ============================================================================ audiosocket


# ============================================================================ running


async def _slot(
    make: Callable[[], Caller],
    clock: FrameClock,
    stats: Stats,
    slot: int,
    start_at: float,
    deadline: float,
) -> None:
    """One concurrent call slot: when a call ends before the deadline, dial again."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    n = 0
    while loop.time() < deadline - 1.0:
        caller = make()
        n += 1
        stats.calls_started += 1
        try:
            await caller.connect()
        except Exception as exc:
            stats.dropped_calls += 1
            stats.error(f"connect: {exc!r}")
            await asyncio.sleep(1.0)
            continue
        clock.callers.add(caller)
        try:
            await caller.converse(deadline)
        except Exception as exc:
            caller.fail(f"converse: {exc!r}")
        finally:
            clock.callers.discard(caller)
            if not caller.ended.is_set():
                await caller.hangup()
            caller.count_lost(loop.time())
        if caller.failed is not None:
            stats.dropped_calls += 1
            stats.error(caller.failed)
        else:
            stats.calls_completed += 1


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run N callers for the duration; the client-side results as a dict."""
    rate, audio = load(Path(args.audio))
    call_no = itertools.count()
    stats = Stats()
    clock = FrameClock(stats)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    ramp_s = max(0.5, min(15.0, args.calls / 40))
    t0 = loop.time()
    steady = t0 + ramp_s
    deadline = steady + args.duration
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        def make() -> Caller:
            """The next call, with its own booking conversation."""
            kw: dict[str, Any] = {
                "audio": audio,
                "script": conversation(next(call_no)),
                "rate": rate,
                "stats": stats,
            }
            if args.transport == "ws":
                return WsCaller(http, args.url, **kw)
            if args.transport == "voximplant":
                return VoximplantCaller(http, args.url, args.secret, **kw)
            host, _, port = args.url.rpartition(":")
            return AudioSocketCaller(http, args.register_url, host, int(port), **kw)

        ticker = asyncio.create_task(clock.run(stop))
        slots = [
            asyncio.create_task(
                _slot(make, clock, stats, i, t0 + ramp_s * i / args.calls, deadline)
            )
            for i in range(args.calls)
        ]
        await asyncio.sleep(max(0.0, steady - loop.time()))
        cpu0, wall0 = _cpu_s(), time.time()
        clock.measuring = True
        print(f"STEADY {wall0:.3f}", flush=True)
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        cpu1, wall1 = _cpu_s(), time.time()
        clock.measuring = False
        print(f"END {wall1:.3f}", flush=True)
        # Hang up whatever is still talking; bounded in time.
        live = list(clock.callers)
        await asyncio.wait(
            [asyncio.ensure_future(c.hangup()) for c in live] or [asyncio.sleep(0)], timeout=15
        )
        _, pending = await asyncio.wait(slots, timeout=20)
        for t in pending:
            t.cancel()
        stop.set()
        await asyncio.wait([ticker], timeout=2)
    lag = sorted(stats.tick_lag_ms)
    return {
        "transport": args.transport,
        "calls": args.calls,
        "duration_s": round(wall1 - wall0, 2),
        "window": [wall0, wall1],
        "v2v_ms": stats.v2v_ms,
        "v2v_by_line": stats.v2v_by_line,
        "underruns": stats.underruns,
        "underrun_gaps_ms": stats.underrun_gaps_ms[:200],
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "dropped_calls": stats.dropped_calls,
        "calls_started": stats.calls_started,
        "calls_completed": stats.calls_completed,
        "bot_hangups": stats.bot_hangups,
        "replies": stats.replies,
        "no_reply": stats.no_reply,
        "turn_events": stats.turn_events,
        "utterances_said": stats.utterances_said,
        "lost_utterances": stats.lost_utterances,
        "booking_ids": stats.booking_ids,
        # Seconds since the window opened (negative: during the ramp).
        "v2v_timeline": [(round(t - steady, 3), n, v) for t, n, v in stats.v2v_timeline],
        "client_cpu_s_per_s": round((cpu1 - cpu0) / max(1e-9, wall1 - wall0), 3),
        "client_tick_lag_ms": {
            "late_ticks": len(lag),
            "max": round(lag[-1], 1) if lag else 0.0,
            "p99": round(lag[int(0.99 * (len(lag) - 1))], 1) if lag else 0.0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m voicebot.bench.load ...`: run and write the results JSON."""
    p = argparse.ArgumentParser(prog="python -m voicebot.bench.load")
    p.add_argument("--transport", choices=["ws", "voximplant", "audiosocket"], default="ws")
    p.add_argument("--url", required=True, help="ws://host:port/ws, ws://.../voximplant, host:port")
    p.add_argument("--audio", required=True, help="caller_<rate>.json from bench_audio")
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--secret", default=os.environ.get("VOICEBOT_VOXIMPLANT_SECRET", ""))
    p.add_argument("--register-url", default="", help="audiosocket: POST /audiosocket/register")
    p.add_argument("--out", required=True)
    p.add_argument("--uvloop", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
