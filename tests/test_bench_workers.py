"""`voicebot bench --workers N`: the server under test as a supervisor and N workers on
a throwaway PostgreSQL, measured as one group. No timing assertions: the figures are
benchmark results; what is tested is that every worker is found and counted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.bench.pg import pg_bin
from voicebot.bench.runner import RAMP_STEPS, ramp_steps
from voicebot.bench.servers import ServerGroup

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
needs_pg = pytest.mark.skipif(pg_bin() is None, reason="needs PostgreSQL (initdb, pg_ctl)")


def _bench(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "bench", *flags],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@needs_espeak
@needs_pg
def test_two_workers_are_measured_as_one_server() -> None:
    proc = _bench("--workers", "2", "--calls", "10", "--duration", "5", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0])
    assert report["workers"] == 2
    assert report["store"] == "postgresql (throwaway)"
    # The supervisor and both workers are counted, and each worker's records are read:
    # the kernel spreads the 10 connections over the two SO_REUSEPORT listeners by a
    # hash of the client's address and port, so all 10 on one worker has a chance of
    # 2 ** -9. Greetings are what a 5 s window surely holds.
    assert len(report["server_pids"]) == 3
    by_pid = report["turns_by_pid"]
    assert len(by_pid) == 2 and set(by_pid) < {str(p) for p in report["server_pids"]}
    assert all(n > 0 for n in by_pid.values()), by_pid
    assert sum(by_pid.values()) == report["turns"] >= 10
    assert report["turns_by_trigger"].get("greeting", 0) >= 10
    assert set(report["server_loop_lag_ms"]["per_pid"]) == set(by_pid)
    assert report["cpu_s_per_s"] > 0
    assert report["store_cpu_s_per_s"] >= 0  # the bench's PostgreSQL, on its own
    assert report["errors"] == 0 and report["dropped_calls"] == 0
    # The bench stopped its PostgreSQL: no cluster directory is left behind.
    assert not any(Path("/tmp").glob("voicebot-bench-pg-*/data/postmaster.pid"))


def test_several_workers_refuse_an_sqlite_store(tmp_path: Path) -> None:
    proc = _bench("--workers", "2", "--store", f"sqlite:///{tmp_path / 'b.sqlite3'}")
    assert proc.returncode == 2
    assert "PostgreSQL" in proc.stderr


def test_the_soak_refuses_several_workers() -> None:
    proc = _bench("--soak", "5", "--workers", "2")
    assert proc.returncode == 2
    assert "--soak runs one worker" in proc.stderr


def test_a_ramp_without_calls_goes_through_every_step() -> None:
    assert ramp_steps(None) == list(RAMP_STEPS)
    assert ramp_steps(100) == [10, 25, 50, 100]
    assert ramp_steps(5) == [10]
    assert ramp_steps(1000) == [*RAMP_STEPS, 1000]


def test_the_group_counts_only_live_announced_processes(tmp_path: Path) -> None:
    me = os.getpid()
    (tmp_path / f"server-{me}.json").write_text(json.dumps({"pid": me, "port": 1}))
    dead = 2**22 + 1  # above the default pid_max: no such process
    (tmp_path / f"server-{dead}.json").write_text(json.dumps({"pid": dead, "port": 2}))
    (tmp_path / "server-torn.json").write_text("{")
    group = ServerGroup(1, tmp_path, workers=1)
    group.wait(timeout=1)
    assert group.ports == {me: 1}
    assert group.pids() == [1, me]
    assert group.cpu_s() > 0 and group.rss_mb() > 0
    with pytest.raises(RuntimeError, match="1 of 2"):
        ServerGroup(1, tmp_path, workers=2).wait(timeout=0.3)
