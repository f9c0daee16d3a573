"""A throwaway PostgreSQL cluster for `voicebot bench --workers N` (N > 1).

Several workers share bookings, and `voicebot serve --workers N` refuses SQLite
(voicebot/ops/workers.py), so a multi-worker bench needs PostgreSQL. Unless
`--store postgresql://...` names one, the bench starts its own, as
`scripts/pg-test-server.sh` does for the tests: `initdb` into a temporary directory,
`pg_ctl start` on a free loopback port (trust authentication, so nothing leaves
127.0.0.1), one fresh database per ramp step (`createdb`), `pg_ctl stop -m fast` and
the directory removed at the end. As root the server runs as the `postgres` user, since
PostgreSQL refuses to run as root. The binaries are the newest
`/usr/lib/postgresql/<version>/bin` (Debian's layout) or the ones on PATH.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from voicebot.bench.measure import HOST, free_port, proc_cpu_s

USER = "voicebot"


def pg_bin() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`, or None when PostgreSQL is absent."""

    def version(path: str) -> tuple[int, ...]:
        tag = Path(path).parent.name
        return tuple(int(x) for x in tag.split(".") if x.isdigit())

    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(f"{d}/initdb")]
    if dirs:
        return Path(max(dirs, key=version))
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    """One private cluster: `start()`, `database(name)` per step, `stop()`.

    Raises RuntimeError when PostgreSQL is not installed; CalledProcessError (with
    the tool's output) when a tool fails.
    """

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.dir: Path | None = None
        self.port = 0
        self.runas: list[str] = []

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.runas, str(self.bin / tool), *args] if self.bin else []
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        """Run initdb, then pg_ctl start on a free port on 127.0.0.1 (waits until it accepts)."""
        if self.bin is None:
            raise RuntimeError(
                "voicebot bench --workers N needs PostgreSQL (initdb/pg_ctl not found); "
                "install it or pass --store postgresql://..."
            )
        self.dir = Path(tempfile.mkdtemp(prefix="voicebot-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.runas = ["runuser", "-u", "postgres", "--"]
        data = str(self.dir / "data")
        self._run("initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8")
        self.port = free_port()
        # Enough connections for a few workers' pools (each opens up to its max_size).
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c max_connections=200"
        self._run("pg_ctl", "-D", data, "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def database(self, name: str) -> str:
        """Create the empty database `name`; its URL."""
        self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", USER, name)
        return f"postgresql://{USER}@{HOST}:{self.port}/{name}"

    def cpu_s(self) -> float:
        """CPU seconds PostgreSQL has used (its postmaster with the backends it reaped,
        plus the live backends), so the bench can report the store's share: with one
        worker the SQLite store runs inside the server and counts as server CPU."""
        if self.dir is None:
            return 0.0
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
            total = proc_cpu_s(pid, children=True)
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            return 0.0
        for kid in kids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += proc_cpu_s(int(kid))
        return total

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files; safe to call twice."""
        if self.dir is None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
