"""`voicebot bench --soak S --faults`: a tiny soak, end to end (emulator, server, load
generator), with every fault kind injected at least once. No timing assertions: the
figures are benchmark results; what must hold is the accounting and that nothing
confirmed to a caller is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from voicebot.bench.soak import FAULTS, memory_growth

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
]


def test_a_short_soak_with_faults_reports_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    env["VOICEBOT_SOAK_FAULT_PERIOD_S"] = "1.2"
    cmd = [sys.executable, "-m", "voicebot.cli", "bench", "--soak", "8", "--faults"]
    cmd += ["--calls", "2", "--json"]
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report["faults"]) == set(FAULTS), report["faults"]
    assert report["fault_inject_errors"] == []
    for key in ("memory", "lost_utterances", "unanswered_turns", "lost_bookings", "v2v_ms"):
        assert key in report
    assert report["lost_bookings"] == 0
    assert report["calls_started"] >= 2 and report["utterances_said"] >= 2
    counters = report["server_counters"]
    # The injected faults reached the server's own metrics.
    assert any(k.startswith("voicebot_provider_errors_total") for k in counters), counters
    assert counters.get("voicebot_stt_stream_events_total{event=reconnect}", 0) >= 1


def test_memory_growth_is_the_slope_after_the_warm_up() -> None:
    flat = [(t, 100.0) for t in range(0, 600, 5)]
    assert memory_growth(flat, 600)["slope_mb_per_hour"] == 0.0
    rising = [(t, 100.0 + t / 60) for t in range(0, 600, 5)]  # 1 MB a minute
    got = memory_growth(rising, 600)
    assert got["warmup_s"] == 60.0 and abs(got["slope_mb_per_hour"] - 60.0) < 0.1


def test_the_warm_up_is_a_fixed_minute_whatever_the_run_length() -> None:
    # 5 MB of start-up in the first 45 s, then flat: a 5-minute run must not count the
    # start-up (10 % of it, 30 s, would) as growth.
    samples = [(t, 100.0 + min(t, 45) / 9) for t in range(0, 300, 5)]
    got = memory_growth(samples, 300)
    assert got["warmup_s"] == 60.0
    assert got["growth_mb"] == 0.0 and got["slope_mb_per_hour"] == 0.0
    assert memory_growth([(t, 100.0) for t in range(0, 1800, 5)], 1800)["warmup_s"] == 60.0
    # A run no longer than the warm-up measures over what it has.
    assert memory_growth([(0, 100.0), (5, 101.0)], 8)["growth_mb"] == 1.0
