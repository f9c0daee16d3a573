"""`voicebot bench --soak SECONDS [--faults]`: a long load with injected provider faults.

The same three processes as `voicebot bench` (emulator, `voicebot serve`, load
generator; see `voicebot/bench.py`), held for SECONDS with `--calls` concurrent
browser-protocol callers that keep dialling. With `--faults`, every
`FAULT_PERIOD_S` one fault is injected into the emulator (a test double of Yandex
Cloud) through its admin routes, in turn:

- `stt_drop`: every open recognition stream is reset (as by a balancer);
- `gpt_429`, `gpt_500`, `gpt_hang`: the next YandexGPT call answers 429, 500, or
  never (the client's timeout must fire);
- `tts_error`: the next synthesis fails with UNAVAILABLE.

Reported: server RSS growth (after a fixed 60 s warm-up, and its slope per hour), lost
utterances (a caller line never transcribed), unanswered turns (a caller line with no
bot audio within 10 s), lost bookings (confirmed to a caller in a `booking` event,
absent from the store after the run), errors and dropped calls, the server's own
provider-error and STT stream counters from `/metrics`, and v2v percentiles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from voicebot.bench.audio import prepare
from voicebot.bench.measure import HOST, pcts, proc_rss_mb
from voicebot.bench.procs import wait_line as _wait_line
from voicebot.bench.runner import RATES, Bench, Children, make_setup

FAULTS = ("stt_drop", "gpt_429", "gpt_500", "gpt_hang", "tts_error")
FAULT_PERIOD_S = float(os.environ.get("VOICEBOT_SOAK_FAULT_PERIOD_S", "30"))
RSS_PERIOD_S = 5.0
# Memory growth is counted from this far into the run, whatever its length: start-up,
# imports and the first calls' caches settle within it, and paired runs of different
# lengths stay comparable (a share of the run would count 30 s of a 5-minute soak).
WARMUP_S = 60.0


def _post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def inject(http_url: str, fault: str) -> dict[str, Any]:
    """One fault into the emulator at `http_url` (its admin routes)."""
    if fault == "stt_drop":
        return _post(f"{http_url}/emulator/stt/drop")
    if fault.startswith("gpt_"):
        return _post(f"{http_url}/emulator/gpt/faults", {"faults": [fault[4:]]})
    if fault == "tts_error":
        return _post(f"{http_url}/emulator/tts/faults", {"faults": ["UNAVAILABLE"]})
    raise ValueError(f"unknown fault {fault!r}")


class Sampler(threading.Thread):
    """RSS of the server every RSS_PERIOD_S, and faults every FAULT_PERIOD_S."""

    def __init__(self, pid: int, http_url: str | None) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.http_url = http_url
        self.rss: list[tuple[float, float]] = []
        self.injected: dict[str, int] = {}
        self.inject_errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        """Sample the server's RSS and inject the next fault in turn, until `stop` is set (a
        thread)."""
        t0 = time.monotonic()
        next_fault = t0 + FAULT_PERIOD_S
        k = 0
        while not self.stop.wait(min(RSS_PERIOD_S, max(0.0, next_fault - time.monotonic()))):
            now = time.monotonic()
            try:
                self.rss.append((now - t0, proc_rss_mb(self.pid)))
            except OSError:
                return
            if self.http_url and now >= next_fault:
                fault = FAULTS[k % len(FAULTS)]
                k += 1
                next_fault += FAULT_PERIOD_S
                try:
                    inject(self.http_url, fault)
                    self.injected[fault] = self.injected.get(fault, 0) + 1
                except Exception as exc:  # reported, never fatal
                    self.inject_errors.append(f"{fault}: {exc!r}")


def memory_growth(samples: list[tuple[float, float]], duration: float) -> dict[str, Any]:
    """RSS after the warm-up (`WARMUP_S`, 60 s) to the end, and the least-squares slope
    over that span in MB per hour.

    `samples` are (seconds since the load started, RSS in MB); `duration` (s) is the run's
    wall time. A run no longer than the warm-up measures over all its samples.
    """
    warm = WARMUP_S if duration > WARMUP_S else 0.0
    xs = [(t, m) for t, m in samples if t >= warm] or samples
    if not xs:
        return {}
    n = len(xs)
    mt = sum(t for t, _ in xs) / n
    mm = sum(m for _, m in xs) / n
    var = sum((t - mt) ** 2 for t, _ in xs)
    slope = sum((t - mt) * (m - mm) for t, m in xs) / var if var > 0 else 0.0
    return {
        "warmup_s": round(warm, 1),
        "rss_mb_after_warmup": round(xs[0][1], 1),
        "rss_mb_end": round(xs[-1][1], 1),
        "rss_mb_max": round(max(m for _, m in samples), 1),
        "growth_mb": round(xs[-1][1] - xs[0][1], 1),
        "slope_mb_per_hour": round(slope * 3600, 1),
        "samples": n,
    }


def counters(text: str) -> dict[str, float]:
    """`name{labels}` -> value for the counters of interest in a /metrics body."""
    keep = (
        "voicebot_provider_errors",
        "voicebot_stt_stream_events",
        "voicebot_bookings",
        "voicebot_calls",
        "voicebot_turns",
    )
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name not in keep:
            continue
        for s in fam.samples:
            if s.name.endswith("_total"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


def stored_booking_ids(store_url: str) -> set[str]:
    """Ids of every booking row in the bench's SQLite store."""
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT id FROM bookings")}


def _get(url: str, token: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def run_soak(args: argparse.Namespace) -> int:
    """The whole soak: processes up, load + faults for `args.soak` s, the report."""
    args.transport = "ws"  # transcripts and booking events are visible on this protocol
    args.uvloop = os.environ.get("VOICEBOT_BENCH_LOAD_UVLOOP") == "1"
    args.profile = None
    keep = os.environ.get("VOICEBOT_BENCH_KEEP")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="voicebot-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    children = Children()
    try:
        bench = Bench(args, make_setup(work, args.config), children)
        audio = prepare(work / "audio", RATES["ws"])
        bench.start_emulator()
        server, http_port, _ = bench.start_server(args.calls)
        store = bench.setup.store(args.calls)
        out = work / "soak-load.json"
        cmd = [sys.executable, "-m", "voicebot.bench.load", "--transport", "ws"]
        cmd += ["--url", f"ws://{HOST}:{http_port}/ws", "--audio", str(audio)]
        cmd += ["--calls", str(args.calls), "--duration", str(args.soak), "--out", str(out)]
        load = children.start(cmd, bench._env(), work / "soak-load.log")
        sampler = Sampler(server.pid, bench.endpoints.get("http") if args.faults else None)
        t0 = time.monotonic()
        sampler.start()
        _wait_line(load, "END", args.soak + 120)
        load.wait(120)
        sampler.stop.set()
        sampler.join(10)
        wall = time.monotonic() - t0
        rss_end = proc_rss_mb(server.pid)
        base = f"http://{HOST}:{http_port}"
        prom = _get(f"{base}/metrics", bench.metrics_token)
        client = json.loads(out.read_text(encoding="utf-8"))
        confirmed = [b for b in client.get("booking_ids", []) if b]
        stored = stored_booking_ids(store)
        report = {
            "soak_s": args.soak,
            "wall_s": round(wall, 1),
            "calls": args.calls,
            "faults": dict(sampler.injected),
            "fault_period_s": FAULT_PERIOD_S if args.faults else None,
            "fault_inject_errors": sampler.inject_errors[:5],
            "memory": {**memory_growth(sampler.rss, wall), "rss_mb_final": round(rss_end, 1)},
            "calls_started": client["calls_started"],
            "calls_completed": client["calls_completed"],
            "dropped_calls": client["dropped_calls"],
            "errors": client["errors"],
            "error_samples": client["error_samples"][:10],
            "utterances_said": client["utterances_said"],
            "lost_utterances": client["lost_utterances"],
            "unanswered_turns": client["no_reply"],
            "replies": client["replies"],
            "bookings_confirmed": len(confirmed),
            "lost_bookings": len([b for b in confirmed if b not in stored]),
            "bookings_stored": len(stored),
            "v2v_ms": pcts(client["v2v_ms"]),
            "underruns": client["underruns"],
            "server_counters": counters(prom),
        }
    finally:
        children.stop_all()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 1))
    return 0 if report["lost_bookings"] == 0 else 1
