"""`voicebot bench`: calls per core, engine overhead and voice-to-voice latency.

Three processes, so that each one's CPU is its own:
1. the emulator (`voicebot emulator`), the stand-in for Yandex Cloud, with fixed and
   printed provider latencies;
2. `voicebot serve` (via `voicebot.bench_server`, which only adds `/metrics`), the
   process under test, pointed at the emulator exactly as at the real cloud (API key,
   explicit endpoints, no TLS);
3. the load generator (`voicebot.bench_load`), N concurrent phone-like callers.

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
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voicebot.bench_audio import prepare
from voicebot.bench_split import (
    CHAT_REPLIES_PER_CALL,
    CHAT_REPLY,
    speculation_report,
    targets,
    v2v_split,
)
from voicebot.config import DEFAULT_CONFIG_PATH

HOST = "127.0.0.1"
RAMP_STEPS = (10, 25, 50, 100, 200, 300, 400, 500, 600, 800)
SLO_OVERHEAD_P99_MS = 50.0

# Fixed provider latencies of the emulator (printed in every report).
PROVIDER_LATENCIES: dict[str, float] = {
    "eou_pause_ms": 700,
    "gpt_ttft_ms": 300,
    "gpt_tokens_per_s": 60,
    "tts_ttfb_ms": 120,
    "tts_chunk_ms": 100,
}
RATES = {"ws": 16000, "voximplant": 8000, "audiosocket": 8000}
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- /proc


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """user+sys CPU seconds of a process (plus its reaped children's, e.g. espeak-ng)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    # After the command: state is fields[0]; utime=[11], stime=[12], cutime=[13], cstime=[14].
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat): to spot foreign load."""
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / _TICK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 2)


def pcts(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99)}


# ---------------------------------------------------------------------- processes


class Children:
    """Every process we start, killed (whole process group) however we leave."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
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
    work: Path
    config: Path
    api_key: str
    secret: str

    def store(self, calls: int) -> str:
        """A fresh booking database per step: earlier steps' bookings take no slots."""
        return f"sqlite:///{self.work / f'bookings-{calls}.sqlite3'}"


def make_setup(work: Path, base_config: str | None, dialogue: str = "booking") -> Setup:
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
    raw.setdefault("server", {}).update({"host": HOST, "max_sessions": 5000})
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
        http_port, as_port = free_port(), free_port()
        cfg = self._server_config(http_port, as_port)
        env = self._env()
        env["YANDEX_API_KEY"] = self.setup.api_key
        env["YANDEX_FOLDER_ID"] = "b1gbenchfolder"
        env["VOICEBOT_VOXIMPLANT_SECRET"] = self.setup.secret
        env["VOICEBOT_METRICS_TOKEN"] = self.metrics_token
        cmd = [self.python, "-m", "voicebot.bench_server"]
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
        cmd = [self.python, "-m", "voicebot.bench_load", "--transport", a.transport]
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


def summarize(
    *,
    calls: int,
    wall: float,
    server_cpu: float,
    emulator_cpu: float,
    rss0: float,
    rss1: float,
    turns: list[dict[str, Any]],
    client: dict[str, Any],
    loop_lag: dict[str, Any] | None = None,
    machine_busy: float | None = None,
    speculation: dict[str, int] | None = None,
    dialogue: str = "booking",
) -> dict[str, Any]:
    cpu_s_per_s = server_cpu / wall if wall > 0 else 0.0
    engine = [overhead(t) for t in turns if "total" in t]
    engine_field = [float(t["engine"]) for t in turns if "engine" in t]
    gpt = [t for t in turns if float(t.get("llm_wait", 0) or 0) > 0]
    by_trigger: dict[str, int] = {}
    for t in turns:
        by_trigger[str(t.get("trigger"))] = by_trigger.get(str(t.get("trigger")), 0) + 1
    stages = (
        "eou_to_final",
        "final_to_first_text",
        "first_text_to_first_audio",
        "first_audio_to_transport",
        "stt_wait",
        "llm_wait",
        "tts_wait",
        "provider_wait",
        "total",
    )
    utter = [t for t in turns if t.get("trigger") == "utterance"]
    det = [t for t in utter if float(t.get("llm_wait", 0) or 0) == 0]
    budget_det = PROVIDER_LATENCIES["eou_pause_ms"] + PROVIDER_LATENCIES["tts_ttfb_ms"]
    v2v = client["v2v_ms"]
    emu_cpu = emulator_cpu / wall if wall > 0 else 0.0
    bottleneck = "server"
    if emu_cpu > 0.85:
        bottleneck = "emulator (saturates a core)"
    elif client.get("client_cpu_s_per_s", 0) > 0.85:
        bottleneck = "load generator (saturates a core)"
    return {
        "calls": calls,
        "dialogue": dialogue,
        "v2v_split_ms": v2v_split(utter),
        "speculation": speculation_report(utter, speculation or {}),
        "targets": targets(utter, dialogue, PROVIDER_LATENCIES),
        "duration_s": round(wall, 2),
        "cpu_s_per_s": round(cpu_s_per_s, 3),
        "cpu_pct_per_call": round(cpu_s_per_s * 100 / calls, 3),
        "rss_mb_per_call": round((rss1 - rss0) / calls, 3),
        "v2v_ms": pcts(v2v),
        "overhead_ms": pcts(engine),
        "engine_field_ms": pcts(engine_field),
        "turns": len(turns),
        "underruns": client["underruns"],
        "errors": client["errors"],
        "dropped_calls": client["dropped_calls"],
        "provider_latencies": dict(PROVIDER_LATENCIES),
        "v2v_budget_ms": {
            "deterministic_turn": budget_det,
            "gpt_turn_first_token": budget_det + PROVIDER_LATENCIES["gpt_ttft_ms"],
        },
        "v2v_samples": len(v2v),
        "v2v_mean_ms": round(sum(v2v) / len(v2v), 1) if v2v else None,
        "gpt_turns": len(gpt),
        "gpt_share": round(len(gpt) / len(turns), 3) if turns else 0.0,
        "deterministic_turns_with_llm_wait": 0,  # by construction of `det` below
        "deterministic_turns": len(det),
        "turns_by_trigger": by_trigger,
        "stage_ms": {k: pcts([float(t[k]) for t in turns if k in t]) for k in stages},
        "server_rss_mb": {"before": round(rss0, 1), "loaded": round(rss1, 1)},
        "server_loop_lag_ms": loop_lag or {},
        "emulator_cpu_s_per_s": round(emu_cpu, 3),
        "client_cpu_s_per_s": client.get("client_cpu_s_per_s"),
        # Busy CPU of the whole machine minus ours: other people's processes competing.
        "foreign_cpu_s_per_s": (
            round(
                machine_busy / wall
                - cpu_s_per_s
                - emu_cpu
                - float(client.get("client_cpu_s_per_s") or 0),
                3,
            )
            if machine_busy is not None and wall > 0
            else None
        ),
        "client_tick_lag_ms": client.get("client_tick_lag_ms"),
        "bottleneck": bottleneck,
        "calls_started": client["calls_started"],
        "calls_completed": client["calls_completed"],
        "bot_hangups": client["bot_hangups"],
        "replies": client["replies"],
        "no_reply": client["no_reply"],
        "underrun_gaps_ms": client["underrun_gaps_ms"][:20],
        "error_samples": client["error_samples"][:10],
    }


def overhead(t: dict[str, Any]) -> float:
    """Engine time on a turn's critical path: its stages minus the provider waits on it.

    The server's own `engine` field subtracts `tts_wait` summed over ALL sentences,
    most of which overlap playback, so it clips to 0 on multi-sentence replies; only
    the first sentence's synthesis delays the first audio. It is bounded here by the
    stage it belongs to.
    """
    f = lambda k: float(t.get(k, 0) or 0)  # noqa: E731
    tts_first = min(f("tts_wait"), f("first_text_to_first_audio"))
    stt = min(f("stt_wait"), f("eou_to_final"))
    return max(0.0, f("total") - stt - f("llm_wait") - tts_first)


def slo_ok(r: dict[str, Any]) -> bool:
    p99 = r["overhead_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= SLO_OVERHEAD_P99_MS
        and r["underruns"] == 0
        and r["errors"] == 0
        and r["dropped_calls"] == 0
        and r["turns"] > 0
    )


# ---------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(mem_gb, 1),
        "python": platform.python_version(),
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "calls  cpu s/s  %/call  MB/call  v2v p50/p95/p99 ms    overhead p50/p95/p99 ms  "
        "turns  gpt%  underruns  errors  dropped  emu s/s  client s/s  other s/s"
    )
    rows = [head]
    for r in results:
        v, o = r["v2v_ms"], r["overhead_ms"]
        rows.append(
            f"{r['calls']:>5}  {r['cpu_s_per_s']:>7.3f}  {r['cpu_pct_per_call']:>6.2f}  "
            f"{r['rss_mb_per_call']:>7.3f}  {_t(v):<20}  {_t(o):<23}  {r['turns']:>5}  "
            f"{r['gpt_share'] * 100:>4.0f}  {r['underruns']:>9}  {r['errors']:>6}  "
            f"{r['dropped_calls']:>7}  {r['emulator_cpu_s_per_s']:>7.3f}  "
            f"{r['client_cpu_s_per_s']:>10.3f}  {r.get('foreign_cpu_s_per_s') or 0:>9.3f}"
        )
    return "\n".join(rows)


def _t(p: dict[str, float | None]) -> str:
    return "/".join("-" if p[k] is None else f"{p[k]:.0f}" for k in ("p50", "p95", "p99"))


# ---------------------------------------------------------------------- CLI


def run_cli(args: argparse.Namespace) -> int:
    if getattr(args, "soak", None):
        from voicebot.soak import run_soak

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
            from voicebot.bench_suite import run_suite

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
