"""`voicebot bench` runs end to end (emulator, server, load generator) and reports
every field. No timing assertions: the numbers are benchmark results, not tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voicebot.bench.measure import proc_cpu_s, proc_rss_mb, slo_ok, summarize

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

KEYS = (
    "calls",
    "duration_s",
    "cpu_s_per_s",
    "cpu_pct_per_call",
    "rss_mb_per_call",
    "v2v_ms",
    "overhead_ms",
    "turns",
    "underruns",
    "errors",
    "dropped_calls",
)


def test_bench_two_calls_reports_every_field() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "bench",
            "--calls",
            "2",
            "--duration",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout  # exactly one JSON object
    report = json.loads(lines[0])
    for key in KEYS:
        assert key in report, key
    assert report["calls"] == 2
    for key in ("v2v_ms", "overhead_ms"):
        assert set(report[key]) == {"p50", "p95", "p99"}
    # Both calls got their greeting, measured by the server (5 s is too short to be
    # sure a caller line and its answer fit in the window).
    assert report["turns"] >= 2
    assert report["turns_by_trigger"].get("greeting", 0) >= 2
    assert report["cpu_s_per_s"] > 0
    assert report["errors"] == 0 and report["dropped_calls"] == 0
    assert report["provider_latencies"]["eou_pause_ms"] == 700


def test_proc_readers_see_this_process() -> None:
    assert proc_cpu_s(os.getpid()) > 0
    assert proc_rss_mb(os.getpid()) > 1


def test_summary_and_slo_from_records() -> None:
    turns = [
        {
            "trigger": "utterance",
            "eou_to_final": 700.0,
            "final_to_first_text": 2.0,
            "first_text_to_first_audio": 130.0,
            "first_audio_to_transport": 0.5,
            "total": 832.5,
            "stt_wait": 700.0,
            "llm_wait": 0.0,
            "tts_wait": 400.0,  # summed over sentences: more than the stage it belongs to
            "provider_wait": 1100.0,
            "engine": 0.0,
        }
    ]
    client = {
        "v2v_ms": [900.0, 1000.0],
        "underruns": 0,
        "errors": 0,
        "dropped_calls": 0,
        "calls_started": 1,
        "calls_completed": 1,
        "bot_hangups": 0,
        "replies": 2,
        "no_reply": 0,
        "underrun_gaps_ms": [],
        "error_samples": [],
        "client_cpu_s_per_s": 0.01,
    }
    r = summarize(
        calls=1,
        wall=10.0,
        server_cpu=0.5,
        emulator_cpu=0.1,
        rss0=50,
        rss1=51,
        turns=turns,
        client=client,
    )
    # 832.5 - 700 (stt) - 0 (llm) - min(400, 130) (first sentence's synthesis) = 2.5
    assert r["overhead_ms"]["p50"] == pytest.approx(2.5)
    assert r["cpu_s_per_s"] == pytest.approx(0.05)
    assert r["v2v_ms"]["p50"] == pytest.approx(950.0)
    assert slo_ok(r)
    assert not slo_ok({**r, "underruns": 1})


@pytest.mark.parametrize(
    ("offline", "client_scripts", "hooks"),
    [
        (True, False, True),
        (False, False, False),
        (False, True, True),
    ],
)
def test_emulator_hooks_only_offline_or_with_client_scripts(
    offline: bool, client_scripts: bool, hooks: bool
) -> None:
    from voicebot.clock import RealClock
    from voicebot.config import Config
    from voicebot.runtime import Runtime

    cfg = Config()
    cfg.emulator.client_scripts = client_scripts
    rt = Runtime(
        cfg,
        recognizer=None,  # type: ignore[arg-type]
        synthesizer=None,  # type: ignore[arg-type]
        llm=None,
        dialogues=None,  # type: ignore[arg-type]
        clock=RealClock(),
        offline=offline,
    )
    assert rt.emulator_hooks is hooks


def test_bench_conversations_are_coherent_and_varied() -> None:
    from voicebot.bench.audio import all_lines, conversation

    convs = [conversation(k) for k in range(300)]
    assert all(len(c) == 6 and c[-1] == "Да, всё верно" for c in convs)
    assert set().union(*convs) <= set(all_lines())  # every line has its audio
    # concurrent calls rarely want the same time: (day, time) pairs are spread out
    assert len({(c[1], c[2]) for c in convs}) >= 90


def test_stage_split_speculation_and_targets() -> None:
    from voicebot.bench.report import render
    from voicebot.bench.split import speculation_report, targets, v2v_split

    def rec(total: float, llm: float, tts: float, spec: str | None) -> dict[str, Any]:
        eng = total - 705.0 - llm - tts
        return {
            "trigger": "utterance",
            "speculation": spec,
            "total": total,
            "eou_wait": 705.0,
            "llm_first_sentence": llm,
            "tts_first_byte": tts,
            "engine": eng,
        }

    det = [rec(712.0, 0.0, 1.0, "hit"), rec(714.0, 0.0, 2.0, "hit"), rec(830.0, 0.0, 120.0, "miss")]
    split = v2v_split(det)
    assert split["total"]["p50"] == 714.0 and split["eou_wait"]["p50"] == 705.0
    sp = speculation_report(det, {"extra_chars": 20, "spoken_chars": 400, "attempts": 3})
    assert (sp["hits"], sp["misses"], sp["hit_rate"], sp["extra_share"]) == (2, 1, 0.667, 0.05)
    t = targets(det, "booking")
    assert t["budget_ms"] == 760.0 and t["ok"]
    chat = [rec(1160.0, 324.0, 125.0, None), rec(1200.0, 324.0, 125.0, None)]
    fixed = {"eou_pause_ms": 700, "gpt_ttft_ms": 300, "gpt_tokens_per_s": 60, "tts_ttfb_ms": 120}
    t = targets(chat, "chat", fixed)
    # 700 + (300 + 1 token at 60/s) + 120 + 30 = 1166.7 < p50 total 1180; engine 6 and 46 ms
    assert t["budget_ms"] == 1166.7 and not t["ok"] and t["engine_p50_ms"] == 26.0
    doc = render(
        [
            {
                "dialogue": "chat",
                "transport": "ws",
                "calls": 1,
                "cpu_s_per_s": 0.01,
                "cpu_pct_per_call": 1.0,
                "rss_mb_per_call": 1.0,
                "v2v_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                "overhead_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                "turns": 2,
                "underruns": 0,
                "errors": 0,
                "dropped_calls": 0,
                "v2v_split_ms": v2v_split(chat),
                "speculation": speculation_report(chat, {}),
                "targets": t,
            },
            {
                "suite": {
                    "dialogues": 2,
                    "caller_turns": 10,
                    "hits": 9,
                    "misses": 1,
                    "hit_rate": 0.9,
                    "coverage": 0.9,
                    "extra_chars": 5,
                    "spoken_chars": 100,
                    "extra_share": 0.05,
                    "speed": 3.0,
                }
            },
        ],
        "cmd",
    )
    assert "| chat | 1 | 1180 / 1198 / 1200 |" in doc
    assert "1180 ≤ 1167: MISSED (engine p50 26)" in doc
    assert "hit rate 90.0 %" in doc and "= 5.0 %" in doc


def test_suite_finds_the_dialogue_files() -> None:
    from voicebot.bench.suite import DIALOGUES_DIR

    # The package move left it pointing at voicebot/tests/dialogues: an empty suite.
    assert len(list(DIALOGUES_DIR.glob("*.yaml"))) >= 30


def test_the_bench_server_takes_every_caller_from_one_address(tmp_path: Path) -> None:
    """All load comes from 127.0.0.1: the per-address /ws cap must not refuse callers
    (with the default cap of 10, a 20-call ws bench dropped every call past the tenth)."""
    import argparse

    import yaml

    from voicebot.bench.runner import Bench, Children, make_setup

    args = argparse.Namespace(transport="ws", dialogue="booking")
    bench = Bench(args, make_setup(tmp_path, None), Children())
    bench.endpoints = {"stt": "127.0.0.1:1", "tts": "127.0.0.1:2", "http": "http://127.0.0.1:3"}
    cfg = yaml.safe_load(bench._server_config(8080, 9092).read_text(encoding="utf-8"))
    assert cfg["server"]["ws_connections_per_address"] == 0
