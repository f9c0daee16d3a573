"""The server under test as a group of processes: one `voicebot serve`, or a
`--workers N` supervisor and its N workers.

Every bench server process announces its private bench port in the bench directory
(voicebot/bench/server.py, `server-<pid>.json`). This module finds them and adds the
group up, so one worker and N workers are measured the same way:

- CPU seconds and RSS: summed over the process the bench started (the supervisor, or
  the single server) and every announced worker (from /proc);
- per-turn records and speculation totals: gathered from every process;
- event-loop lag: per process, and the group's as the worst process's p50, p99 and
  max (a call on a lagging worker hears that worker's lag, not an average);
- reset / lag reset: sent to every process.

A worker that dies mid-step is restarted by the supervisor under a new PID; its
records and CPU up to then are lost, which shows as errors or dropped calls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from voicebot.bench.measure import HOST, proc_cpu_s, proc_rss_mb
from voicebot.bench.procs import http_json

BENCH_DIR_ENV = "VOICEBOT_BENCH_DIR"  # where every bench server process announces itself


class ServerGroup:
    """The processes of one server under test (see the module docstring)."""

    def __init__(self, root_pid: int, bench_dir: Path, workers: int) -> None:
        self.root_pid = root_pid
        self.dir = bench_dir
        self.workers = workers
        self.ports: dict[int, int] = {}  # pid -> private bench port

    def wait(self, timeout: float, alive: Any = None) -> None:
        """Until `workers` processes have announced themselves (RuntimeError after
        `timeout` s, or when `alive()` turns False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.refresh()
            if len(self.ports) >= self.workers:
                return
            if alive is not None and not alive():
                break
            time.sleep(0.2)
        raise RuntimeError(
            f"{len(self.ports)} of {self.workers} server process(es) announced in {self.dir}"
        )

    def refresh(self) -> None:
        """Re-read the announcements of processes that are still alive."""
        ports: dict[int, int] = {}
        for f in self.dir.glob("server-*.json"):
            try:
                entry = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if Path(f"/proc/{int(entry['pid'])}").exists():
                ports[int(entry["pid"])] = int(entry["port"])
        self.ports = ports

    def pids(self) -> list[int]:
        """The root process and every worker (the root once when it is the server)."""
        return sorted({self.root_pid, *self.ports})

    def cpu_s(self) -> float:
        """user+sys CPU seconds of the group (a process gone is counted as 0)."""
        return sum(_or_zero(proc_cpu_s, pid) for pid in self.pids())

    def rss_mb(self) -> float:
        """Resident memory of the group (MB)."""
        return sum(_or_zero(proc_rss_mb, pid) for pid in self.pids())

    def _each(self, path: str, method: str = "GET") -> dict[int, Any]:
        return {
            pid: http_json(f"http://{HOST}:{port}{path}", method)
            for pid, port in sorted(self.ports.items())
        }

    def reset(self) -> None:
        """Empty every process's turn records, speculation totals and lag samples."""
        self._each("/bench/reset", "POST")

    def lag_reset(self) -> None:
        """Restart every process's loop-lag count."""
        self._each("/bench/lag_reset", "POST")

    def turns(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Every process's per-turn records, and how many came from each PID."""
        out: list[dict[str, Any]] = []
        by_pid: dict[str, int] = {}
        for pid, body in self._each("/bench/turns").items():
            records = list(body.get("turns", []))
            out += records
            by_pid[str(pid)] = len(records)
        return out, by_pid

    def speculation(self) -> dict[str, int]:
        """Speculation totals summed over the processes."""
        total: dict[str, int] = {}
        for body in self._each("/bench/speculation").values():
            for k, v in body.items():
                total[k] = total.get(k, 0) + int(v)
        return total

    def loop_lag(self) -> dict[str, Any]:
        """The worst process's loop lag (ms), and each process's under `per_pid`."""
        each = self._each("/bench/stats")
        if len(each) == 1:
            return next(iter(each.values()))
        worst: dict[str, Any] = {"n": sum(int(s.get("n", 0)) for s in each.values())}
        for k in ("p50", "p99", "max"):
            vals = [float(s[k]) for s in each.values() if k in s]
            if vals:
                worst[k] = max(vals)
        worst["per_pid"] = {str(pid): s for pid, s in each.items()}
        return worst


def _or_zero(read: Any, pid: int) -> float:
    try:
        return float(read(pid))
    except (OSError, ValueError, IndexError):
        return 0.0
