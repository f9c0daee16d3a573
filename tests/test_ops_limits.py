"""Limits and trust: forwarded addresses, per-address caps, token buckets, admission,
and readiness (back-pressure) — pure logic, on a hand-driven clock."""

from __future__ import annotations

import pytest

from voicebot.ops.health import OverloadPolicy, Readiness
from voicebot.ops.limits import (
    AddressLimiter,
    Admission,
    TokenBucket,
    client_address,
    parse_networks,
)


class Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


PROXY = parse_networks(["127.0.0.1", "10.0.0.0/8"])


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    assert client_address("127.0.0.1", "203.0.113.7", PROXY) == "203.0.113.7"
    # A client that sends its own header directly: ignored.
    assert client_address("198.51.100.2", "1.2.3.4", PROXY) == "198.51.100.2"
    # A forged left part: the right-most untrusted hop is the client.
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.7", PROXY) == "203.0.113.7"
    assert client_address("127.0.0.1", "203.0.113.7, 10.1.2.3", PROXY) == "203.0.113.7"
    assert client_address("127.0.0.1", "not-an-ip", PROXY) == "127.0.0.1"
    assert client_address("127.0.0.1", None, PROXY) == "127.0.0.1"
    assert client_address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"  # none trusted
    with pytest.raises(ValueError, match="trusted_proxies"):
        parse_networks(["300.1.1.1"])


def test_address_limiter_caps_concurrent_connections() -> None:
    lim = AddressLimiter(2)
    assert lim.acquire("a") and lim.acquire("a")
    assert not lim.acquire("a")
    assert lim.acquire("b")
    lim.release("a")
    assert lim.acquire("a")
    lim.release("a"), lim.release("a"), lim.release("b")
    assert lim.open == {}
    assert all(AddressLimiter(0).acquire("x") for _ in range(100))


def test_token_bucket_refills_at_its_rate() -> None:
    now = Now()
    bucket = TokenBucket(rate=10, burst=5, now=now)
    assert sum(bucket.take() for _ in range(20)) == 5
    now.t += 0.5
    assert sum(bucket.take() for _ in range(20)) == 5  # 10/s x 0.5 s, capped at the burst
    now.t += 0.1
    assert sum(bucket.take() for _ in range(20)) == 1


def test_admission_reserves_capacity_for_telephony() -> None:
    adm = Admission(max_sessions=10, channel_limits={"browser": 6}, telephony_reserve=3)
    assert adm.admit("browser", {"browser": 5}) is None
    assert adm.admit("browser", {"browser": 6}) == "channel_limit"
    assert adm.admit("browser", {"browser": 2, "voximplant": 5}) == "reserved_for_telephony"
    assert adm.admit("voximplant", {"browser": 2, "voximplant": 5}) is None
    assert adm.admit("audiosocket", {"browser": 6, "voximplant": 4}) == "busy"
    assert adm.admit("browser", {"browser": 4}, pending=2) == "channel_limit"


def test_readiness_goes_down_on_errors_and_latency_and_recovers() -> None:
    now = Now()
    r = Readiness(OverloadPolicy(window_s=60, min_turns=3, error_rate=1.0, recover_s=60), now)
    assert r.ready
    for _ in range(4):
        r.on_turn({"llm_wait": 300.0, "tts_wait": 100.0})
    assert r.ready
    for _ in range(3):
        r.on_provider_error("yandexgpt", "RESOURCE_EXHAUSTED")
    assert r.ready  # 3 errors in 4 turns: under the rate
    r.on_provider_error("yandexgpt", "RESOURCE_EXHAUSTED")
    r.on_provider_error("yandexgpt", "INTERNAL")
    ready, reasons = r.state()
    assert not ready and "yandexgpt" in reasons[0]
    now.t += 20
    assert not r.ready  # still in the window: seen bad again at t+20
    now.t += 41  # the errors left the window; the state holds while recovering
    ready, reasons = r.state()
    assert not ready and "recovering" in reasons
    now.t += 20  # 60 s after the last bad look
    assert r.ready
    for _ in range(5):
        r.on_turn({"llm_wait": 5000.0, "tts_wait": 100.0})
    ready, reasons = r.state()
    assert not ready and reasons[0].startswith("llm p95")
    now.t += 100
    r.mark_down("tts")
    assert r.state() == (False, ["tts marked down"])
    r.mark_down("tts", False)
    now.t += 61
    assert r.ready
    r.start_draining()
    assert r.state() == (False, ["draining"])
