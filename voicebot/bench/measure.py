"""What `voicebot bench` measures and reports: /proc CPU and memory, percentiles, the
per-step summary, the SLO, the machine, the table.

CPU is read from /proc/<pid>/stat (utime+stime, in clock ticks), RSS from
/proc/<pid>/status; percentiles are nearest-rank. Latency stages come from the server's
own per-turn records (`GET /metrics`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Sequence
from typing import Any

from voicebot.bench.split import (
    speculation_report,
    targets,
    v2v_split,
)

HOST = "127.0.0.1"

SLO_OVERHEAD_P99_MS = 50.0

# Fixed provider latencies of the emulator (printed in every report).
PROVIDER_LATENCIES: dict[str, float] = {
    "eou_pause_ms": 700,
    "gpt_ttft_ms": 300,
    "gpt_tokens_per_s": 60,
    "tts_ttfb_ms": 120,
    "tts_chunk_ms": 100,
}

_TICK = os.sysconf("SC_CLK_TCK")


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
    """Resident memory of process `pid` (MB, from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    """A free TCP port on the bench's host."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` percentile of `values` (None when empty)."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 2)


def pcts(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 of `values` (ms; None when empty)."""
    return {"p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99)}


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
    """One ramp step's result: CPU per call, RSS, stage latencies (p50/p95/p99), v2v,
    errors."""
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
    """True when the step meets the SLO: engine overhead p99 under 50 ms, no errors or
    drops."""
    p99 = r["overhead_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= SLO_OVERHEAD_P99_MS
        and r["underruns"] == 0
        and r["errors"] == 0
        and r["dropped_calls"] == 0
        and r["turns"] > 0
    )


def machine() -> dict[str, Any]:
    """The machine: CPU model, cores, Python, platform."""
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
    """The human-readable results table, one row per step."""
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
