"""Prometheus `/metrics`: token, text format, histograms in seconds, no caller labels.

A real call (the engine on the in-process emulator) produces the turn; the exposition
is parsed with prometheus_client's own text parser, as a Prometheus server would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.browser_fixtures import Received, of_type, read_until
from voicebot.ops import metrics
from voicebot.ops.http import check_loopback
from voicebot.server import create_app

TOKEN = "t0ken-for-tests"


@asynccontextmanager
async def served(**server: object) -> AsyncIterator[TestClient]:
    from voicebot.config import load_config
    from voicebot.runtime import Runtime

    cfg = load_config(env={})
    cfg.dialogue.factory = "voicebot.dialogue:build_echo"
    for key, value in server.items():
        setattr(cfg.server, key, value)
    runtime = await Runtime.create(cfg)
    client = TestClient(TestServer(create_app(runtime)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await runtime.aclose()


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, object], name: str, suffix: str = "", **labels: str) -> float:
    fam = fams[name]
    for s in fam.samples:  # type: ignore[attr-defined]
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


async def test_metrics_need_the_token_and_parse_as_prometheus_text() -> None:
    async with served(metrics_token=TOKEN) as client:
        assert (await client.get("/metrics")).status == 401
        bad = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert bad.status == 401
        assert (await client.get("/metrics/turns")).status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        before = families(await (await client.get("/metrics", headers=auth)).text())
        v2v_before = sample(before, "voicebot_voice_to_voice_seconds", "_count")
        calls_before = sample(before, "voicebot_calls", "_total", channel="browser")

        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "start", "sample_rate": 16000})
        got = Received()
        await read_until(ws, got, of_type("turn", turn_id="t1"), within=20)
        mid = families(await (await client.get("/metrics", headers=auth)).text())
        assert sample(mid, "voicebot_active_calls", channel="browser") >= 1
        await ws.send_json({"type": "text", "text": "Хочу на стрижку"})
        await read_until(ws, got, of_type("turn", turn_id="t2"), within=20)
        await ws.send_json({"type": "stop"})
        await read_until(ws, got, of_type("done"))
        await ws.close()

        response = await client.get("/metrics", headers=auth)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        fams = families(await response.text())
        # Histograms, in seconds: the 1 s bucket exists and a turn is well under 10 s.
        v2v = fams["voicebot_voice_to_voice_seconds"]
        assert v2v.type == "histogram" and v2v.unit in ("", "seconds")  # type: ignore[attr-defined]
        assert sample(fams, "voicebot_voice_to_voice_seconds", "_count") >= v2v_before + 2
        assert 0 < sample(fams, "voicebot_voice_to_voice_seconds", "_bucket", le="10.0")
        stages = {
            s.labels["stage"]
            for s in fams["voicebot_stage_latency_seconds"].samples  # type: ignore[attr-defined]
        }
        assert {"eou_wait", "llm_first_sentence", "tts_first_byte", "engine"} <= stages
        assert sample(fams, "voicebot_calls", "_total", channel="browser") == calls_before + 1
        assert sample(fams, "voicebot_turns", "_total", trigger="text") >= 1
        assert "voicebot_event_loop_lag_seconds" in fams
        # No label may identify a caller.
        for fam in fams.values():
            for s in fam.samples:  # type: ignore[attr-defined]
                assert not {"phone", "call_id", "session_id", "caller"} & set(s.labels)

        turns = await (await client.get("/metrics/turns", headers=auth)).json()
        assert any(t["trigger"] == "text" and t["total"] > 0 for t in turns["turns"])


async def test_without_a_token_the_main_port_hides_metrics() -> None:
    async with served() as client:
        assert (await client.get("/metrics")).status == 404
        assert (await client.get("/metrics", headers={"Authorization": "Bearer "})).status == 404


def test_provider_errors_are_counted_by_provider_and_code() -> None:
    from voicebot.providers.base import ProviderError

    def value(code: str) -> float:
        v = metrics.PROVIDER_ERRORS.labels("yandex-gpt", code)._value.get()
        return float(v)

    before = value("RESOURCE_EXHAUSTED")
    ProviderError("quota", code="RESOURCE_EXHAUSTED", provider="yandex-gpt")
    assert value("RESOURCE_EXHAUSTED") == before + 1
    closed = value("CANCELLED")
    ProviderError("we closed it", code="CANCELLED", provider="yandex-gpt")
    assert value("CANCELLED") == closed  # our own close is not a provider error


def test_the_token_less_metrics_port_must_be_loopback() -> None:
    check_loopback("127.0.0.1")
    check_loopback("::1")
    for host in ("0.0.0.0", "10.0.0.5", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            check_loopback(host)


def test_callback_gauges_appear_in_the_exposition() -> None:
    metrics.register_gauge_callback("voicebot_test_depth", "A test gauge.", lambda: 7)
    try:
        fams = families(metrics.render()[0].decode())
        assert sample(fams, "voicebot_test_depth") == 7
    finally:
        metrics.unregister_gauge_callback("voicebot_test_depth")
    with pytest.raises(ValueError):
        metrics.register_gauge_callback("depth", "no prefix", lambda: 1)


def test_the_grafana_dashboard_uses_only_metrics_we_export() -> None:
    import json
    import re
    from pathlib import Path

    import booking.metrics  # noqa: F401  (registers voicebot_bookings_total)

    dash = json.loads(
        (Path(__file__).parent.parent / "scripts/grafana/voicebot-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(voicebot_[a-z_]+)", e)}
    metrics.register_outbox(lambda: 0)
    try:
        text = metrics.render()[0].decode()
    finally:
        metrics.unregister_gauge_callback(metrics.OUTBOX_DEPTH_METRIC)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exported = {
        f.name + sfx
        for f in text_string_to_metric_families(text)
        for sfx in suffixes.get(f.type, ("",))
    }
    assert used <= exported, used - exported
    assert len(used) >= 12


async def test_outbox_depth_is_polled_into_a_gauge() -> None:
    from types import SimpleNamespace

    from booking.metrics import OutboxDepth
    from voicebot.clock import RealClock

    async def outbox_stats() -> object:
        return SimpleNamespace(pending=3, due=1, failed=0)

    depth = OutboxDepth.started(outbox_stats, RealClock())
    try:
        for _ in range(50):
            if depth.pending is not None:
                break
            await __import__("asyncio").sleep(0.01)
        fams = families(metrics.render()[0].decode())
        assert sample(fams, metrics.OUTBOX_DEPTH_METRIC) == 3
    finally:
        await depth.stop()
    assert metrics.OUTBOX_DEPTH_METRIC not in families(metrics.render()[0].decode())


def test_outbox_failures_are_counted_by_channel_and_outcome() -> None:
    def value() -> float:
        return float(metrics.OUTBOX_FAILURES.labels("telegram", "retry")._value.get())

    before = value()
    metrics.outbox_failure("telegram", "retry")
    assert value() == before + 1
