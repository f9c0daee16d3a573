"""`voicebot bench`: calls per core, engine overhead and voice-to-voice latency.

Three processes, so that each one's CPU is its own:
1. the emulator (`voicebot emulator`), the stand-in for Yandex Cloud, with fixed and
   printed provider latencies;
2. `voicebot serve` (via `voicebot.bench.server`, which only adds bench routes), the
   process under test, pointed at the emulator exactly as at the real cloud (API key,
   explicit endpoints, no TLS); with `--workers N` (N > 1) a supervisor and N workers
   on one port, on a PostgreSQL store (`--store`, or a throwaway cluster the bench
   starts: voicebot/bench/pg.py);
3. the load generator (`voicebot.bench.load`), N concurrent phone-like callers.

CPU and RSS of the server (summed over the supervisor and its workers:
voicebot/bench/servers.py; and the emulator's CPU, so a saturated emulator shows) are
read from /proc over the window in which all N calls are up. Stage timings come from
the server's own per-turn records (every worker's), voice-to-voice and underruns from
the client. Everything binds 127.0.0.1 and every child is killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voicebot.bench.audio import prepare
from voicebot.bench.measure import (
    HOST,
    PROVIDER_LATENCIES,
    free_port,
    machine,
    machine_busy_s,
    proc_cpu_s,
    slo_ok,
    summarize,
    table,
)
from voicebot.bench.pg import ThrowawayPostgres
from voicebot.bench.procs import Children, wait_http, wait_line
from voicebot.bench.servers import BENCH_DIR_ENV, ServerGroup
from voicebot.bench.split import (
    CHAT_REPLIES_PER_CALL,
    CHAT_REPLY,
)
from voicebot.config import DEFAULT_CONFIG_PATH

RAMP_STEPS = (10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 600, 800)
DEFAULT_CALLS = 10  # one run without --calls; a ramp without it goes through RAMP_STEPS

RATES = {"ws": 16000, "voximplant": 8000, "audiosocket": 8000}


# ---------------------------------------------------------------------- the run


@dataclass
class Setup:
    """The bench's working files: the server config, the emulator settings, the ports."""

    work: Path
    config: Path
    api_key: str
    secret: str

    def store(self, calls: int) -> str:
        """A fresh booking database per step: earlier steps' bookings take no slots."""
        return f"sqlite:///{self.work / f'bookings-{calls}.sqlite3'}"


def make_setup(work: Path, base_config: str | None, dialogue: str = "booking") -> Setup:
    """Write the bench's configs under `work` from `base_config` (default: the repo's
    config.yaml) for `dialogue`."""
    raw = yaml.safe_load(Path(base_config or DEFAULT_CONFIG_PATH).read_text(encoding="utf-8"))
    raw = raw or {}
    raw.setdefault("dialogue", {})["factory"] = dialogue
    emu = raw.setdefault("emulator", {})
    emu.update(
        {
            "tts_ttfb_ms": PROVIDER_LATENCIES["tts_ttfb_ms"],
            "tts_chunk_ms": PROVIDER_LATENCIES["tts_chunk_ms"],
            "gpt_ttft_ms": PROVIDER_LATENCIES["gpt_ttft_ms"],
            "gpt_tokens_per_s": PROVIDER_LATENCIES["gpt_tokens_per_s"],
            "stt_max_stream_s": 3600,
            # Each call hands the emulator its own coherent transcript (bench only).
            "client_scripts": True,
        }
    )
    raw.setdefault("yandex", {}).setdefault("stt", {})["eou_pause_ms"] = int(
        PROVIDER_LATENCIES["eou_pause_ms"]
    )
    raw["log_level"] = "WARNING"
    # Every simulated caller connects from 127.0.0.1: the per-address /ws cap (10 by
    # default, against one abusive client) would refuse all but ten of them.
    raw.setdefault("server", {}).update(
        {"host": HOST, "max_sessions": 5000, "ws_connections_per_address": 0}
    )
    raw.setdefault("telephony", {}).setdefault("audiosocket", {}).update(
        {"host": HOST, "enabled": True}
    )
    cfg = work / "bench-config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Setup(
        work=work,
        config=cfg,
        api_key="bench-" + os.urandom(8).hex(),
        secret="bench-" + os.urandom(8).hex(),
    )


class Bench:
    """One bench run: the emulator, then per step a server and a load generator."""

    def __init__(self, args: argparse.Namespace, setup: Setup, children: Children) -> None:
        self.args = args
        self.setup = setup
        self.children = children
        self.python = sys.executable
        self.emulator: subprocess.Popen[str] | None = None
        self.endpoints: dict[str, str] = {}
        # The server's /metrics (soak) needs a bearer token.
        self.metrics_token = "bench-" + os.urandom(8).hex()
        self.workers = int(getattr(args, "workers", None) or 1)
        self.store_url: str | None = getattr(args, "store", None)
        self.pg: ThrowawayPostgres | None = None
        self.group: ServerGroup | None = None

    def store(self, calls: int) -> str:
        """The step's booking store: `--store`, else a fresh SQLite file (one worker) or
        a fresh database in the bench's own PostgreSQL (several workers)."""
        if self.store_url:
            return self.store_url
        if self.workers == 1:
            return self.setup.store(calls)
        if self.pg is None:
            self.pg = ThrowawayPostgres()
            self.pg.start()
        return self.pg.database(f"bench_{calls}_{os.urandom(3).hex()}")

    def close(self) -> None:
        """Stop the bench's own PostgreSQL, if it started one."""
        if self.pg is not None:
            self.pg.stop()

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("YANDEX_", "VOICEBOT_", "DEEPGRAM", "SONIOX", "ELEVENLABS"))
        }
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start_emulator(self) -> None:
        """Start the emulator process with the fixed provider latencies; wait until it
        serves."""
        s = self.setup
        cmd = [self.python, "-m", "voicebot.cli", "--log-level", "WARNING", "emulator"]
        cmd += ["--host", HOST, "--stt-port", "0", "--tts-port", "0", "--http-port", "0"]
        cmd += ["--api-key", s.api_key, "--config", str(s.config)]
        self.emulator = self.children.start(cmd, self._env(), s.work / "emulator.log")
        line = wait_line(self.emulator, "EMULATOR_READY", 60)
        self.endpoints = json.loads(line.split(" ", 1)[1])

    def script_gpt(self, calls: int) -> None:
        """`--dialogue chat`: queue the emulator's GPT answers for a step."""
        if self.args.dialogue != "chat":
            return
        left = calls * CHAT_REPLIES_PER_CALL
        while left > 0:  # in batches: the admin route takes bodies up to 1 MB
            n = min(left, 500)
            left -= n
            body = json.dumps({"replies": [CHAT_REPLY] * n}, ensure_ascii=False)
            req = urllib.request.Request(
                f"{self.endpoints['http']}/emulator/gpt/script",
                data=body.encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()

    def _server_config(self, http_port: int, as_port: int) -> Path:
        raw = yaml.safe_load(self.setup.config.read_text(encoding="utf-8"))
        y = raw.setdefault("yandex", {})
        y["endpoints"] = {
            "stt": self.endpoints["stt"],
            "tts": self.endpoints["tts"],
            "llm_url": self.endpoints["http"],
            "iam_url": self.endpoints["http"],
            "tls": False,
        }
        raw["server"]["port"] = http_port
        # The server's own settings (config.yaml: uvloop auto, gc_freeze), unless a
        # measurement of their effect overrides them.
        uv = os.environ.get("VOICEBOT_BENCH_UVLOOP")
        if uv in ("0", "1"):
            raw["server"]["uvloop"] = "on" if uv == "1" else "off"
        freeze = os.environ.get("VOICEBOT_BENCH_GC_FREEZE")
        if freeze in ("0", "1"):
            raw["server"]["gc_freeze"] = freeze == "1"
        raw["telephony"]["audiosocket"]["port"] = as_port
        path = self.setup.work / "server-config.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), "utf-8")
        return path

    def start_server(self, calls: int) -> tuple[subprocess.Popen[str], int, int]:
        """Start the server under test (`voicebot.bench.server`, `--workers N`) for a
        step of `calls` calls; its (root) process and ports. `self.group` is then its
        processes, every one of them announced and serving."""
        http_port, as_port = free_port(), free_port()
        cfg = self._server_config(http_port, as_port)
        env = self._env()
        env["YANDEX_API_KEY"] = self.setup.api_key
        env["YANDEX_FOLDER_ID"] = "b1gbenchfolder"
        env["VOICEBOT_VOXIMPLANT_SECRET"] = self.setup.secret
        env["VOICEBOT_METRICS_TOKEN"] = self.metrics_token
        bench_dir = self.setup.work / f"servers-{calls}-{os.urandom(3).hex()}"
        bench_dir.mkdir(parents=True)
        env[BENCH_DIR_ENV] = str(bench_dir)
        cmd = [self.python, "-m", "voicebot.bench.server"]
        cmd += [
            "--log-level",
            os.environ.get("VOICEBOT_BENCH_SERVER_LOG", "WARNING"),
            "serve",
            "--config",
            str(cfg),
        ]
        cmd += ["--port", str(http_port), "--audiosocket-port", str(as_port)]
        cmd += ["--store", self.store(calls), "--workers", str(self.workers)]
        proc = self.children.start(cmd, env, self.setup.work / "server.log")
        self.group = ServerGroup(proc.pid, bench_dir, self.workers)
        self.group.wait(60 + 15 * self.workers, alive=lambda: proc.poll() is None)
        wait_http(f"http://{HOST}:{http_port}/healthz", proc, 60)
        return proc, http_port, as_port

    def run_step(self, calls: int) -> dict[str, Any]:
        """Run one step of `calls` concurrent calls; the summary of that step."""
        self.script_gpt(calls)
        server, http_port, as_port = self.start_server(calls)
        try:
            return self._measure(server, http_port, as_port, calls)
        finally:
            self.children.stop(server)

    def _measure(
        self, server: subprocess.Popen[str], http_port: int, as_port: int, calls: int
    ) -> dict[str, Any]:
        a, s = self.args, self.setup
        audio = prepare(s.work / "audio", RATES[a.transport])
        url = {
            "ws": f"ws://{HOST}:{http_port}/ws",
            "voximplant": f"ws://{HOST}:{http_port}/voximplant",
            "audiosocket": f"{HOST}:{as_port}",
        }[a.transport]
        out = s.work / f"load-{a.transport}-{calls}.json"
        time.sleep(0.5)  # let start-up work settle before the baseline
        group = self.group
        assert group is not None
        group.reset()
        rss0 = group.rss_mb()
        cmd = [self.python, "-m", "voicebot.bench.load", "--transport", a.transport]
        cmd += ["--url", url, "--audio", str(audio), "--calls", str(calls)]
        cmd += ["--duration", str(a.duration), "--out", str(out), "--secret", s.secret]
        cmd += ["--register-url", f"http://{HOST}:{http_port}/audiosocket/register"]
        if a.uvloop:
            cmd.append("--uvloop")
        load = self.children.start(cmd, self._env(), s.work / f"load-{calls}.log")
        assert self.emulator is not None
        ramp_timeout = 60 + calls / 10
        wait_line(load, "STEADY", ramp_timeout)
        group.lag_reset()
        busy0 = machine_busy_s()
        db0 = self.pg.cpu_s() if self.pg else 0.0
        srv0, emu0, t0 = (
            group.cpu_s(),
            proc_cpu_s(self.emulator.pid, True),
            time.monotonic(),
        )
        profile = self._start_profile(server.pid, calls)
        wait_line(load, "END", a.duration + 60)
        busy1 = machine_busy_s()
        db1 = self.pg.cpu_s() if self.pg else 0.0
        srv1, emu1, t1 = (
            group.cpu_s(),
            proc_cpu_s(self.emulator.pid, True),
            time.monotonic(),
        )
        rss1 = group.rss_mb()
        if profile is not None:
            self.children.stop(profile, timeout=30)
        try:
            load.wait(90)
        except subprocess.TimeoutExpired:
            self.children.stop(load)
        self.children.stop(load)
        group.refresh()  # a worker restarted mid-step answers under its new PID
        turns, turns_by_pid = group.turns()
        client = json.loads(out.read_text(encoding="utf-8"))
        wall = t1 - t0
        result = summarize(
            calls=calls,
            wall=wall,
            server_cpu=srv1 - srv0,
            emulator_cpu=emu1 - emu0,
            rss0=rss0,
            rss1=rss1,
            turns=turns,
            client=client,
            loop_lag=group.loop_lag(),
            machine_busy=busy1 - busy0,
            speculation=group.speculation(),
            dialogue=a.dialogue,
        )
        result["workers"] = self.workers
        if self.pg is not None and wall > 0:
            # The bench's own PostgreSQL is ours, not foreign load; reported on its own
            # (not in the server's CPU: a PostgreSQL in production has its own host).
            result["store_cpu_s_per_s"] = round((db1 - db0) / wall, 3)
            if result.get("foreign_cpu_s_per_s") is not None:
                foreign = result["foreign_cpu_s_per_s"] - result["store_cpu_s_per_s"]
                result["foreign_cpu_s_per_s"] = round(foreign, 3)
        result["server_pids"] = group.pids()
        result["turns_by_pid"] = turns_by_pid
        return result

    def _start_profile(self, pid: int, calls: int) -> subprocess.Popen[str] | None:
        """py-spy on the server over the measured window (`--profile DIR`)."""
        if not self.args.profile:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        d = Path(self.args.profile)
        d.mkdir(parents=True, exist_ok=True)
        dest = d / f"server-{self.args.transport}-{calls}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(dest)]
        if self.workers > 1:
            cmd.append("--subprocesses")  # `pid` is the supervisor
        cmd += ["--duration", str(int(self.args.duration)), "--rate", "100", "--nonblocking"]
        return self.children.start(cmd, self._env(), d / f"py-spy-{calls}.log")


# ---------------------------------------------------------------------- CLI


def ramp_steps(calls: int | None) -> list[int]:
    """The ramp's call counts: every `RAMP_STEPS` entry up to `calls` (all of them when
    `calls` is None), plus `calls` itself past the last one."""
    top = RAMP_STEPS[-1] if calls is None else max(calls, RAMP_STEPS[0])
    steps = [s for s in RAMP_STEPS if s <= top]
    if top > RAMP_STEPS[-1]:
        steps.append(top)
    return steps


def run_cli(args: argparse.Namespace) -> int:
    """`voicebot bench`: run the steps (or the ramp, or the suite) and print the table or
    JSON. Exit 2 on flags that cannot work together."""
    steps = ramp_steps(getattr(args, "calls", None)) if getattr(args, "ramp", False) else []
    if getattr(args, "calls", None) is None:
        args.calls = DEFAULT_CALLS
    workers = int(getattr(args, "workers", None) or 1)
    store = getattr(args, "store", None) or ""
    if workers < 1 or (workers > 1 and store.startswith("sqlite")):
        print(
            "voicebot bench: --workers must be >= 1, and several workers need a PostgreSQL "
            "store (omit --store to let the bench start a throwaway one)",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "soak", None) and workers > 1:
        # The soak checks stored bookings in its SQLite file: one server process only.
        print("voicebot bench: --soak runs one worker (drop --workers)", file=sys.stderr)
        return 2
    if getattr(args, "soak", None):
        from voicebot.bench.soak import run_soak

        return run_soak(args)
    # The load generator on uvloop (cheaper client; the server is set by VOICEBOT_BENCH_UVLOOP).
    args.uvloop = (
        getattr(args, "uvloop", False) or os.environ.get("VOICEBOT_BENCH_LOAD_UVLOOP") == "1"
    )
    args.profile = getattr(args, "profile", None) or os.environ.get("VOICEBOT_BENCH_PROFILE")
    keep = os.environ.get("VOICEBOT_BENCH_KEEP")  # keep logs and results here
    children = Children()
    bench: Bench | None = None
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        if getattr(args, "suite", False):
            from voicebot.bench.suite import run_suite

            out = run_suite()
            out["machine"] = machine()
            print(json.dumps(out, ensure_ascii=False) if args.json else json.dumps(out["suite"]))
            return 0
        args.dialogue = getattr(args, "dialogue", "booking")
        bench = Bench(args, make_setup(work, args.config, args.dialogue), children)
        prepare(work / "audio", RATES[args.transport])  # espeak-ng runs here, once
        bench.start_emulator()
        info = {
            "machine": machine(),
            "dialogue": args.dialogue,
            "transport": args.transport,
            "server_uvloop": _server_loop(),
            "load_uvloop": args.uvloop,
            "workers": workers,
            "store": store.split(":", 1)[0]
            if store
            else ("postgresql (throwaway)" if workers > 1 else "sqlite"),
        }
        if not args.json:
            print(f"voicebot bench: {info}", file=sys.stderr)
            print(f"provider latencies (emulator): {PROVIDER_LATENCIES}", file=sys.stderr)
        max_ok: int | None = None
        for n in steps or [args.calls]:
            if not args.json:
                print(f"... {n} calls for {args.duration:g} s", file=sys.stderr, flush=True)
            r = bench.run_step(n)
            results.append(r)
            if args.ramp:
                if not slo_ok(r):
                    break
                max_ok = n
        if args.json:
            out = dict(results[-1]) if not args.ramp else dict(_last_ok(results))
            out.update(info)
            if args.ramp:
                out["max_calls"] = max_ok or 0
                out["steps"] = results
            print(json.dumps(out, ensure_ascii=False))
        else:
            print(table(results))
            if args.ramp:
                print(f"max_calls within the SLO: {max_ok or 0}")
        if keep:
            (work / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        if bench is not None:
            bench.close()
        signal.signal(signal.SIGTERM, old)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _server_loop() -> str:
    """What `server.uvloop: auto` picks here (or the VOICEBOT_BENCH_UVLOOP override)."""
    uv = os.environ.get("VOICEBOT_BENCH_UVLOOP")
    if uv in ("0", "1"):
        return "uvloop" if uv == "1" else "asyncio"
    from voicebot.server import loop_factory

    return "uvloop" if loop_factory("auto") else "asyncio"


def _last_ok(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if slo_ok(r)]
    return ok[-1] if ok else results[-1]
