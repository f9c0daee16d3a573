"""The bench's child processes and its small HTTP client: start, wait for a line or
a URL, ask for JSON, kill whole process groups however the bench ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from voicebot.config import DEFAULT_CONFIG_PATH


class Children:
    """Every process we start, killed (whole process group) however we leave."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
        """Start `cmd` with `env`, its output to `log`; remembered for `stop_all`."""
        f = open(log, "w", encoding="utf-8")
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=f,
            text=True,
            start_new_session=True,
            cwd=str(DEFAULT_CONFIG_PATH.parent),
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], timeout: float = 10) -> None:
        """Terminate `proc` (SIGTERM, then SIGKILL after `timeout` s)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        """Stop every child still running."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The first stdout line starting with `prefix` (read in a thread: bounded in time)."""
    found: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line.strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not found:
        raise RuntimeError(f"{prefix!r} not seen in {timeout:g} s (exit {proc.poll()})")
    return found[0]


def http_json(url: str, method: str = "GET", timeout: float = 10, token: str | None = None) -> Any:
    """JSON from `url` (POST with an empty body; a bearer `token` if given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(
        url, method=method, data=b"" if method == "POST" else None, headers=headers
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_http(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    """Until `url` answers JSON; RuntimeError if `proc` exits or `timeout` s pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up")
        with contextlib.suppress(OSError, ValueError):
            http_json(url, timeout=2)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up in {timeout:g} s")
