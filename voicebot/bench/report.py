"""Writes the generated part of docs/benchmarks.md from `voicebot bench --json` outputs.

Only the text between the `bench:begin`/`bench:end` markers is replaced, so the
hand-written analysis around it survives a regeneration.

    python -m voicebot.bench.report docs/benchmarks.md COMMAND RESULT.json...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _p(d: dict[str, Any]) -> str:
    return " / ".join("–" if d.get(k) is None else f"{d[k]:.0f}" for k in ("p50", "p95", "p99"))


def render(results: list[dict[str, Any]], command: str) -> str:
    """The generated markdown part of docs/benchmarks.md for `results` and the command."""
    suites = [r for r in results if "suite" in r]
    results = [r for r in results if "suite" not in r]
    m = results[0].get("machine", {}) if results else {}
    lat = results[0].get("provider_latencies", {}) if results else {}
    out = [
        BEGIN,
        "",
        f"Machine: {m.get('nproc')} cores, {m.get('cpu')}, {m.get('ram_gb')} GB RAM, "
        f"Python {m.get('python')}.",
        f"Emulator provider latencies: {json.dumps(lat)}.",
        f"Server event loop: {results[0].get('server_uvloop', '?') if results else '?'}; "
        "each call speaks its own booking conversation (emulator client scripts).",
        "",
        f"Command: `{command}`",
        "",
        "| dialogue | transport | calls | server CPU s/s | % core/call | RSS MB/call | v2v ms p50/p95/p99 "
        "| overhead ms p50/p95/p99 | loop lag p99 ms | turns | GPT turns | underruns | errors "
        "| dropped | emulator s/s | load gen s/s | other procs s/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = r.get("steps") or [r]
        for s in rows:
            out.append(
                f"| {r.get('dialogue', 'booking')} | {r.get('transport')} | {s['calls']} | {s['cpu_s_per_s']:.3f} | "
                f"{s['cpu_pct_per_call']:.2f} | {s['rss_mb_per_call']:.2f} | {_p(s['v2v_ms'])} | "
                f"{_p(s['overhead_ms'])} | {s.get('server_loop_lag_ms', {}).get('p99', '–')} | "
                f"{s['turns']} | {s.get('gpt_turns', 0)} | {s['underruns']} | {s['errors']} | "
                f"{s['dropped_calls']} | {s.get('emulator_cpu_s_per_s')} | "
                f"{s.get('client_cpu_s_per_s')} | {s.get('foreign_cpu_s_per_s')} |"
            )
        if "max_calls" in r:
            out.append(f"\n**Ramp ({r.get('transport')}): max_calls = {r['max_calls']}**\n")
    out += _stages(results) + _suite(suites) + ["", END]
    return "\n".join(out)


def _stages(results: list[dict[str, Any]]) -> list[str]:
    """Voice-to-voice of caller turns by stage (server records) and the targets."""
    rows = [
        r
        for r in results
        if "v2v_split_ms" in r and not r.get("steps") and r.get("transport") == "ws"
    ]
    if not rows:
        return []
    out = [
        "",
        "Voice-to-voice of caller turns by stage, server records, ms p50 / p95 / p99 "
        "(speech end → first bot audio written; the four stages add up to the total):",
        "",
        "| dialogue | calls | total | EOU wait | LLM first sentence | TTS first byte | engine "
        "| speculation hits / misses (hit rate) | extra TTS chars | target (p50) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v, sp, t = r["v2v_split_ms"], r.get("speculation", {}), r.get("targets", {})
        rate = "–" if sp.get("hit_rate") is None else f"{sp['hit_rate'] * 100:.0f} %"
        extra = "–" if sp.get("extra_share") is None else f"{sp['extra_share'] * 100:.1f} %"
        target = (
            f"{t['p50_ms']:.0f} ≤ {t['budget_ms']:.0f}: {'met' if t['ok'] else 'MISSED'}"
            if t
            else "–"
        )
        if t.get("engine_p50_ms") is not None:
            target += f" (engine p50 {t['engine_p50_ms']:.0f})"
        out.append(
            f"| {r.get('dialogue', 'booking')} | {r['calls']} | {_p(v['total'])} "
            f"| {_p(v['eou_wait'])} | {_p(v['llm_first_sentence'])} "
            f"| {_p(v['tts_first_byte'])} | {_p(v['engine'])} "
            f"| {sp.get('hits', 0)} / {sp.get('misses', 0)} ({rate}) | {extra} | {target} |"
        )
    return out


def _suite(suites: list[dict[str, Any]]) -> list[str]:
    """`voicebot bench --suite`: speculation over the dialogue suite."""
    out: list[str] = []
    for r in suites:
        s = r["suite"]
        rate = "–" if s.get("hit_rate") is None else f"{s['hit_rate'] * 100:.1f} %"
        cov = "–" if s.get("coverage") is None else f"{s['coverage'] * 100:.1f} %"
        extra = "–" if s.get("extra_share") is None else f"{s['extra_share'] * 100:.1f} %"
        out += [
            "",
            f"Speculation over the dialogue suite (`voicebot bench --suite`: "
            f"{s['dialogues']} dialogues, {s['caller_turns']} caller turns, simulated at "
            f"{s.get('speed')}×): hits {s.get('hits', 0)}, misses {s.get('misses', 0)} — "
            f"**hit rate {rate}** (target ≥ 80 %); turns answered from prepared audio "
            f"{cov}; prepared and superseded before the final {s.get('superseded', 0)}; "
            f"**extra TTS characters {s.get('extra_chars', 0)} of "
            f"{s.get('spoken_chars', 0)} spoken = {extra}** (target ≤ 20 %).",
        ]
    return out


def main(argv: list[str]) -> int:
    """`python -m voicebot.bench.report FILE COMMAND RESULT.json...`: regenerate FILE's
    generated part."""
    doc, command, files = Path(argv[0]), argv[1], argv[2:]
    results = [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]
    block = render(results, command)
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(head + block + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
