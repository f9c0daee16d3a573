"""`voicebot serve --workers N`: N server processes on the same ports, supervised.

One Python process uses one core. The supervisor (this module, the process the user
started) starts N copies of `voicebot serve` that each bind the HTTP, AudioSocket and
metrics ports with `SO_REUSEPORT`, so the kernel spreads new connections over them
(a WebSocket or TCP call stays on the worker that accepted it). The supervisor:

- resolves port 0 to one free port first (it holds a bound, non-listening socket in
  the same reuse-port group, so the port cannot be taken while it runs);
- gives the workers one shared `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary
  directory unless the environment names one, whose stale files it clears), so any
  worker answers a scrape with the sum of all;
- restarts a worker that dies (and forgets its live gauges), giving up after
  `MAX_RESTARTS` in `RESTART_WINDOW_S` (a crash loop is a bug, not load);
- on SIGTERM/SIGINT forwards SIGTERM, so every worker drains its calls, and exits 0
  when they all did.

Several workers share bookings, so the local backend needs PostgreSQL: an SQLite
store is refused with a clear message (each process would hold its own write lock,
and the no-double-booking guarantee is only proven for one process on SQLite).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from voicebot.config import Config
from voicebot.dialogue import factory_path
from voicebot.ops import metrics

log = logging.getLogger(__name__)

WORKER_ENV = "VOICEBOT_WORKER"  # the worker's index; set: bind with SO_REUSEPORT
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
POLL_S = 0.2
KILL_GRACE_S = 15.0  # past drain_timeout_s, a worker that has not exited is killed


def is_worker() -> bool:
    """True in a process started by the supervisor (bind ports with SO_REUSEPORT)."""
    return WORKER_ENV in os.environ


def store_problem(cfg: Config, store: str | None) -> str | None:
    """Why this configuration cannot run several workers, or None."""
    if not factory_path(cfg.dialogue.factory).startswith("booking."):
        return None
    booking = cfg.domain.get("booking") if isinstance(cfg.domain, Mapping) else None
    booking = booking if isinstance(booking, Mapping) else {}
    if str(booking.get("backend", "local")) != "local":
        return None  # bookings live in an external system (e.g. YCLIENTS)
    url = store or str(booking.get("store", ""))
    if url.startswith("sqlite"):
        return (
            "--workers N with the local booking backend needs PostgreSQL: the SQLite store "
            f"({url}) is safe for one process only. Set booking.store (or --store) to "
            "postgresql://user:pass@host/db, or run one worker."
        )
    return None


def reserve_port(host: str, port: int) -> tuple[int, socket.socket | None]:
    """A concrete port for `port` (0: a free one, held by a bound reuse-port socket)."""
    if port:
        return port, None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return int(sock.getsockname()[1]), sock


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor itself dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_argv(
    argv: Sequence[str], overrides: Mapping[str, str], module: str = "voicebot.cli"
) -> list[str]:
    """The supervisor's own command line for one worker: `--workers 1`, concrete ports
    (argparse keeps the last value of a repeated flag). `module` is what the supervisor
    itself runs as (`voicebot.bench.server` for the bench's server, so its workers
    carry the bench routes too)."""
    out = [sys.executable, "-m", module, *argv, "--workers", "1"]
    for flag, value in overrides.items():
        out += [flag, value]
    return out


class Supervisor:
    """Starts, watches and stops the workers (see the module docstring)."""

    def __init__(self, n: int, argv: list[str], env: dict[str, str], stop_grace_s: float) -> None:
        self.n = n
        self.argv = argv
        self.env = env
        self.stop_grace_s = stop_grace_s
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.restarts: deque[float] = deque()
        self.stopping = False

    def _start(self, index: int) -> None:
        env = {**self.env, WORKER_ENV: str(index)}
        proc = subprocess.Popen(self.argv, env=env, preexec_fn=_die_with_parent)
        self.procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            log.info("supervisor: %s, draining %d worker(s)", signal.Signals(signum).name, self.n)
        self.stopping = True

    def run(self) -> int:
        """Until a signal (then drain) or a crash loop; the exit status."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.n):
                self._start(i)
            while not self.stopping:
                time.sleep(POLL_S)
                if self._reap_and_restart():
                    self.stopping = True
                    return self._stop() or 1
            return self._stop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _reap_and_restart(self) -> bool:
        """Restart dead workers; True when they die too often to go on."""
        for index, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            metrics.mark_worker_dead(proc.pid)
            log.error("worker %d (pid %d) exited with %s; restarting it", index, proc.pid, code)
            now = time.monotonic()
            self.restarts.append(now)
            while self.restarts and self.restarts[0] < now - RESTART_WINDOW_S:
                self.restarts.popleft()
            if len(self.restarts) > MAX_RESTARTS:
                log.critical(
                    "workers died %d times in %g s: giving up", len(self.restarts), RESTART_WINDOW_S
                )
                return True
            self._start(index)
        return False

    def _stop(self) -> int:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        status = 0
        for index, proc in self.procs.items():
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not exit: killing it", index, proc.pid)
                proc.kill()
                code = proc.wait()
            metrics.mark_worker_dead(proc.pid)
            if code != 0:
                status = 1
        return status


def supervise(cfg: Config, args: Any, argv: Sequence[str]) -> int:
    """Run `args.workers` workers of `voicebot serve` (see the module docstring)."""
    n = int(args.workers)
    problem = store_problem(cfg, getattr(args, "store", None))
    if problem:
        log.error("%s", problem)
        print(f"voicebot serve: {problem}", file=sys.stderr)
        return 2
    held: list[socket.socket] = []
    overrides: dict[str, str] = {}
    s = cfg.server
    for flag, host, port in (
        ("--port", s.host, s.port),
        ("--audiosocket-port", cfg.telephony.audiosocket.host, cfg.telephony.audiosocket.port),
    ):
        if flag == "--audiosocket-port" and not cfg.telephony.audiosocket.enabled:
            continue
        concrete, sock = reserve_port(host, port)
        overrides[flag] = str(concrete)
        if sock is not None:
            held.append(sock)
    env = dict(os.environ)
    own_dir = None
    mdir = metrics.multiprocess_dir()
    if mdir:
        for stale in glob.glob(os.path.join(mdir, "*.db")):
            os.unlink(stale)
    else:
        own_dir = mdir = tempfile.mkdtemp(prefix="voicebot-metrics-")
    env[metrics.MULTIPROC_ENV] = mdir
    log.info(
        "supervisor %d: %d workers on port %s (AudioSocket %s), metrics dir %s",
        os.getpid(),
        n,
        overrides["--port"],
        overrides.get("--audiosocket-port", "off"),
        mdir,
    )
    try:
        module = getattr(args, "worker_module", None) or "voicebot.cli"
        cmd = worker_argv(argv, overrides, module)
        sup = Supervisor(n, cmd, env, s.drain_timeout_s + KILL_GRACE_S)
        return sup.run()
    finally:
        for sock in held:
            sock.close()
        if own_dir:
            for f in glob.glob(os.path.join(own_dir, "*")):
                with contextlib.suppress(OSError):
                    os.unlink(f)
            with contextlib.suppress(OSError):
                os.rmdir(own_dir)
