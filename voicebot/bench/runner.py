"""`voicebot bench`: calls per core, engine overhead and voice-to-voice latency.

Three processes, so that each one's CPU is its own:
1. the emulator (`voicebot emulator`), the stand-in for Yandex Cloud, with fixed and
   printed provider latencies;
2. `voicebot serve` (via `voicebot.bench.server`, which only adds `/metrics`), the
   process under test, pointed at the emulator exactly as at the real cloud (API key,
   explicit endpoints, no TLS);
3. the load generator (`voicebot.bench.load`), N concurrent phone-like callers.

CPU and RSS of the server (and the emulator's CPU, so a saturated emulator shows) are
read from /proc over the window in which all N calls are up. Stage timings come from
the server's own per-turn records (`GET /metrics/turns`), voice-to-voice and underruns from
the client. Everything binds 127.0.0.1 and every child is killed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    proc_rss_mb,
    slo_ok,
    summarize,
    table,
)
from voicebot.bench.split import (
    CHAT_REPLIES_PER_CALL,
    CHAT_REPLY,
)
from voicebot.config import DEFAULT_CONFIG_PATH

RAMP_STEPS = (10, 25, 50, 100, 200, 300, 400, 500, 600, 800)

RATES = {"ws": 16000, "voximplant": 8000, "audiosocket": 8000}


# ---------------------------------------------------------------------- /proc


# ---------------------------------------------------------------------- processes


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


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
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


def _http(url: str, method: str = "GET", timeout: float = 10, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(
        url, method=method, data=b"" if method == "POST" else None, headers=headers
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up")
        with contextlib.suppress(OSError, ValueError):
            _http(url, timeout=2)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not up in {timeout:g} s")


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
        # The server's /metrics/turns (per-turn records) needs a bearer token.
        self.metrics_token = "bench-" + os.urandom(8).hex()

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
        line = _wait_line(self.emulator, "EMULATOR_READY", 60)
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
        """Start the server under test (`voicebot.bench.server`) with `calls` slots; its
        process and ports."""
        http_port, as_port = free_port(), free_port()
        cfg = self._server_config(http_port, as_port)
        env = self._env()
        env["YANDEX_API_KEY"] = self.setup.api_key
        env["YANDEX_FOLDER_ID"] = "b1gbenchfolder"
        env["VOICEBOT_VOXIMPLANT_SECRET"] = self.setup.secret
        env["VOICEBOT_METRICS_TOKEN"] = self.metrics_token
        cmd = [self.python, "-m", "voicebot.bench.server"]
        cmd += [
            "--log-level",
            os.environ.get("VOICEBOT_BENCH_SERVER_LOG", "WARNING"),
            "serve",
            "--config",
            str(cfg),
        ]
        cmd += ["--port", str(http_port), "--audiosocket-port", str(as_port)]
        cmd += ["--store", self.setup.store(calls)]
        proc = self.children.start(cmd, env, self.setup.work / "server.log")
        _wait_http(f"http://{HOST}:{http_port}/healthz", proc, 60)
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
        _http(f"http://{HOST}:{http_port}/bench/reset", "POST")
        rss0 = proc_rss_mb(server.pid)
        cmd = [self.python, "-m", "voicebot.bench.load", "--transport", a.transport]
        cmd += ["--url", url, "--audio", str(audio), "--calls", str(calls)]
        cmd += ["--duration", str(a.duration), "--out", str(out), "--secret", s.secret]
        cmd += ["--register-url", f"http://{HOST}:{http_port}/audiosocket/register"]
        if a.uvloop:
            cmd.append("--uvloop")
        load = self.children.start(cmd, self._env(), s.work / f"load-{calls}.log")
        assert self.emulator is not None
        ramp_timeout = 60 + calls / 10
        _wait_line(load, "STEADY", ramp_timeout)
        _http(f"http://{HOST}:{http_port}/bench/lag_reset", "POST")
        busy0 = machine_busy_s()
        srv0, emu0, t0 = (
            proc_cpu_s(server.pid),
            proc_cpu_s(self.emulator.pid, True),
            time.monotonic(),
        )
        profile = self._start_profile(server.pid, calls)
        _wait_line(load, "END", a.duration + 60)
        busy1 = machine_busy_s()
        srv1, emu1, t1 = (
            proc_cpu_s(server.pid),
            proc_cpu_s(self.emulator.pid, True),
            time.monotonic(),
        )
        rss1 = proc_rss_mb(server.pid)
        if profile is not None:
            self.children.stop(profile, timeout=30)
        try:
            load.wait(90)
        except subprocess.TimeoutExpired:
            self.children.stop(load)
        self.children.stop(load)
        metrics = _http(f"http://{HOST}:{http_port}/metrics/turns", token=self.metrics_token)
        loop_lag = _http(f"http://{HOST}:{http_port}/bench/stats")
        speculation = _http(f"http://{HOST}:{http_port}/bench/speculation")
        client = json.loads(out.read_text(encoding="utf-8"))
        wall = t1 - t0
        return summarize(
            calls=calls,
            wall=wall,
            server_cpu=srv1 - srv0,
            emulator_cpu=emu1 - emu0,
            rss0=rss0,
            rss1=rss1,
            turns=metrics.get("turns", []),
            client=client,
            loop_lag=loop_lag,
            machine_busy=busy1 - busy0,
            speculation=speculation,
            dialogue=a.dialogue,
        )

    def _start_profile(self, pid: int, calls: int) -> subprocess.Popen[str] | None:
        """py-spy on the server over the measured window (`--profile DIR`)."""
        if not self.args.profile:
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        d = Path(self.args.profile)
        d.mkdir(parents=True, exist_ok=True)
        dest = d / f"server-{self.args.transport}-{calls}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(dest)]
        cmd += ["--duration", str(int(self.args.duration)), "--rate", "100", "--nonblocking"]
        return self.children.start(cmd, self._env(), d / f"py-spy-{calls}.log")


# ---------------------------------------------------------------------- output


# ---------------------------------------------------------------------- CLI


def run_cli(args: argparse.Namespace) -> int:
    """`voicebot bench`: run the steps (or the ramp, or the suite) and print the table or
    JSON."""
    if getattr(args, "soak", None):
        from voicebot.bench.soak import run_soak

        return run_soak(args)
    # The load generator on uvloop (cheaper client; the server is set by VOICEBOT_BENCH_UVLOOP).
    args.uvloop = (
        getattr(args, "uvloop", False) or os.environ.get("VOICEBOT_BENCH_LOAD_UVLOOP") == "1"
    )
    args.profile = getattr(args, "profile", None) or os.environ.get("VOICEBOT_BENCH_PROFILE")
    keep = os.environ.get("VOICEBOT_BENCH_KEEP")  # keep logs and results here
    steps = [s for s in RAMP_STEPS if s <= max(args.calls, RAMP_STEPS[0])] if args.ramp else []
    if args.ramp and args.calls > RAMP_STEPS[-1]:
        steps.append(args.calls)
    children = Children()
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
