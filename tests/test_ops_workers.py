"""`voicebot serve --workers N`: one port, N processes, restarts, refusals.

Real processes: the supervisor and its workers are started as a user would start them
(`python -m voicebot.cli serve --workers 2`), each worker on its own in-process
emulator (offline), with JSON logs so the test can tell which PID served a call.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from voicebot.config import load_config
from voicebot.ops.workers import store_problem

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_several_workers_refuse_sqlite_with_the_local_backend() -> None:
    cfg = load_config(env={})
    assert "PostgreSQL" in (store_problem(cfg, "sqlite:///data/x.sqlite3") or "")
    assert store_problem(cfg, "postgresql://u:p@h/db") is None
    cfg.domain["booking"]["backend"] = "yclients"
    assert store_problem(cfg, "sqlite:///data/x.sqlite3") is None
    cfg.dialogue.factory = "voicebot.dialogue:build_echo"
    assert store_problem(cfg, None) is None


def test_the_cli_refuses_sqlite_before_starting_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "voicebot.cli", "serve", "--workers", "2"),
            *("--store", f"sqlite:///{tmp_path / 'b.sqlite3'}", "--port", str(free_port())),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "needs PostgreSQL" in proc.stderr


def write_config(tmp_path: Path, port: int, **server: object) -> Path:
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["dialogue"]["factory"] = "voicebot.dialogue:build_echo"
    raw["log_format"] = "json"
    raw["server"].update({"port": port, "drain_timeout_s": 5, **server})
    raw["telephony"]["audiosocket"]["port"] = free_port()
    raw["telephony"]["voximplant"]["secret"] = "s3cret"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def start_serve(
    cfg: Path, log: Path, *extra: str, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "serve", "--config", str(cfg), *extra],
        env=env,
        stderr=log.open("wb"),
        stdout=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )


async def health_pids(http: aiohttp.ClientSession, port: int, want: int, within: float) -> set[int]:
    """PIDs answering /healthz (a new connection each time) until `want` are seen."""
    seen: set[int] = set()
    end = time.monotonic() + within
    while time.monotonic() < end and len(seen) < want:
        try:
            async with http.get(
                f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"}
            ) as r:
                seen.add(int((await r.json())["pid"]))
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.3)
    return seen


async def one_call(http: aiohttp.ClientSession, port: int) -> str:
    """A short browser-protocol call by text; returns its session id."""
    async with http.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000})
        sid = ""
        replied = False
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(msg.data)
                if ev["type"] == "ready":
                    sid = ev["session_id"]
                elif ev["type"] == "turn" and ev["turn_id"] == "t1":
                    await ws.send_json({"type": "text", "text": "Добрый день"})
                elif ev["type"] == "turn":
                    replied = True
                    await ws.send_json({"type": "stop"})
                elif ev["type"] == "done":
                    break
        assert replied and sid
        return sid


def call_pids(log: Path, sids: list[str]) -> set[int]:
    pids = set()
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if any(sid in rec["msg"] for sid in sids) or rec.get("call_id") in sids:
            pids.add(rec["pid"])
    return pids


def stop(proc: subprocess.Popen[bytes], within: float) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


@pytest.mark.slow
async def test_two_workers_answer_calls_on_one_port_and_a_dead_one_comes_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {"VOICEBOT_METRICS_TOKEN": "tok"}
    proc = start_serve(write_config(tmp_path, port), log, "--workers", "2", env_extra=env)
    try:
        async with aiohttp.ClientSession() as http:
            pids = await health_pids(http, port, 2, within=90)
            assert len(pids) == 2, log.read_text()[-3000:]
            sids = [await one_call(http, port) for _ in range(12)]
            served = call_pids(log, sids)
            assert served <= pids and len(served) == 2, (served, pids)
            # Whichever worker answers a scrape, it reports every worker's calls.
            for _ in range(4):
                async with http.get(
                    f"http://127.0.0.1:{port}/metrics",
                    headers={"Authorization": "Bearer tok", "Connection": "close"},
                ) as r:
                    text = await r.text()
                fams = {f.name: f for f in text_string_to_metric_families(text)}
                calls = {
                    s.labels["channel"]: s.value
                    for s in fams["voicebot_calls"].samples
                    if s.name == "voicebot_calls_total"
                }
                assert calls == {"browser": 12.0}, calls
            # A worker dies: the supervisor starts another on the same port.
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            again = await health_pids(http, port, 3, within=60)
            assert len(again - {victim}) == 2, (again, victim)
            assert await one_call(http, port)
    finally:
        code = stop(proc, within=30)
    assert code == 0, log.read_text()[-3000:]
