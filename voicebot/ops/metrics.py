"""Prometheus metrics (`prometheus-client`), safe with several worker processes.

Names follow the Prometheus rules: the `voicebot_` prefix, base units (`_seconds`),
`_total` on counters, and no label that identifies a caller (no phone, no call id):
every label below takes a handful of values (a channel, a stage, a provider, an
error code).

Several workers: `voicebot serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` to a
fresh directory before the workers start (the client picks its storage when it is
first imported, so it must be in the environment by then). Each worker then writes
its samples to mmap files there, and whichever worker answers a scrape merges them
all (`MultiProcessCollector`). One process needs no directory: the default registry.

Stage names are the keys of the engine's per-turn latency records
(`voicebot/engine/session.py`, `Turn.latency`): `stt_wait` (end of speech → final
utterance: the EOU pause), `llm_wait` (LLM time before the first sentence),
`tts_wait` (synthesis time before the first byte), `engine` (everything else on the
critical path), `total` (voice to voice).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Voice-to-voice is judged against a 1-2 s budget; the stage buckets go finer.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
STAGE_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.5,
    5.0,
)
LAG_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Turn-record key -> stage label. The record holds ms; histograms take seconds.
STAGES: Mapping[str, str] = {
    "stt_wait": "eou_wait",
    "llm_wait": "llm_first_sentence",
    "tts_wait": "tts_first_byte",
    "engine": "engine",
}

ACTIVE_CALLS = Gauge(
    "voicebot_active_calls",
    "Calls in progress, by channel (browser, voximplant, audiosocket).",
    ["channel"],
    multiprocess_mode="livesum",
)
CALLS = Counter("voicebot_calls_total", "Calls started, by channel.", ["channel"])
CALLS_REFUSED = Counter(
    "voicebot_calls_refused_total",
    "Calls refused before they started, by channel and reason "
    "(draining, busy, overloaded, rate_limited).",
    ["channel", "reason"],
)
TURNS = Counter(
    "voicebot_turns_total",
    "Bot answers that reached the caller, by what triggered them "
    "(greeting, utterance, text, silence).",
    ["trigger"],
)
VOICE_TO_VOICE = Histogram(
    "voicebot_voice_to_voice_seconds",
    "End of the caller's speech (or typed text) to the first bot audio handed to the transport.",
    buckets=LATENCY_BUCKETS_S,
)
STAGE_LATENCY = Histogram(
    "voicebot_stage_latency_seconds",
    "Per-turn latency on the critical path, by stage "
    "(eou_wait, llm_first_sentence, tts_first_byte, engine).",
    ["stage"],
    buckets=STAGE_BUCKETS_S,
)
PROVIDER_ERRORS = Counter(
    "voicebot_provider_errors_total",
    "Errors returned by a provider (STT, TTS, LLM, IAM), by provider and error code.",
    ["provider", "code"],
)
STT_STREAM_EVENTS = Counter(
    "voicebot_stt_stream_events_total",
    "Recognition stream changes: reconnect (lost and reopened), rotation (before the "
    "stream length cap), failover (switched to the next provider).",
    ["event"],
)
TTS_CACHE = Counter(
    "voicebot_tts_cache_requests_total",
    "Sentences asked of the TTS cache: hit (played from memory), miss (synthesized and "
    "kept), skip (never kept: it has digits).",
    ["result"],
)
OUTBOX_FAILURES = Counter(
    "voicebot_outbox_failures_total",
    "Failed outbox delivery attempts by channel and outcome: retry (tried again later), "
    "failed (given up), channel_down (the channel stopped: bad token, no money...).",
    ["channel", "outcome"],
)
LOOP_LAG = Histogram(
    "voicebot_event_loop_lag_seconds",
    "How late the event loop ran a periodic timer: the delay every call in the process shares.",
    buckets=LAG_BUCKETS_S,
)
LOOP_LAG_MAX = Gauge(
    "voicebot_event_loop_lag_max_seconds",
    "The largest event-loop lag in the last sampling period, per process (max over workers).",
    multiprocess_mode="livemax",
)
READY = Gauge(
    "voicebot_ready",
    "1 while the process takes new calls (what /readyz answers 200 for), else 0.",
    multiprocess_mode="livemin",
)
OUTBOX_DEPTH_METRIC = "voicebot_outbox_queue_depth"  # a callback gauge, see register_outbox
DRAINING = Gauge(
    "voicebot_draining",
    "1 while the process drains (SIGTERM: no new calls), else 0.",
    multiprocess_mode="livemax",
)


# ------------------------------------------------------------------- recording


def call_started(channel: str) -> None:
    """A call was accepted on `channel`."""
    CALLS.labels(channel).inc()
    ACTIVE_CALLS.labels(channel).inc()


def call_ended(channel: str) -> None:
    """A call accepted with `call_started` has ended (exactly once per call)."""
    ACTIVE_CALLS.labels(channel).dec()


def call_refused(channel: str, reason: str) -> None:
    """A call was refused before its session started."""
    CALLS_REFUSED.labels(channel, reason).inc()


def turn_recorded(trigger: str, latency_ms: Mapping[str, Any]) -> None:
    """One `turn` event of a session: its trigger and its latency record in ms."""
    TURNS.labels(trigger or "unknown").inc()
    total = latency_ms.get("total")
    if isinstance(total, int | float):
        VOICE_TO_VOICE.observe(max(0.0, float(total)) / 1000)
    for key, stage in STAGES.items():
        value = latency_ms.get(key)
        if isinstance(value, int | float):
            STAGE_LATENCY.labels(stage).observe(max(0.0, float(value)) / 1000)


# Local life-cycle codes (a stream we closed ourselves) are not provider errors.
_NOT_ERRORS = frozenset({"CANCELLED", "CLOSED", "FAILED_PRECONDITION", "ENDED"})
_error_listeners: list[Callable[[str, str], None]] = []


def provider_error(provider: str, code: str) -> None:
    """A provider answered with an error (or none in time); see `ProviderError`."""
    if code in _NOT_ERRORS:
        return
    provider = provider or "unknown"
    PROVIDER_ERRORS.labels(provider, code).inc()
    for listener in _error_listeners:
        listener(provider, code)


def on_provider_error(listener: Callable[[str, str], None]) -> Callable[[], None]:
    """Call `listener(provider, code)` on each provider error; returns the remover."""
    _error_listeners.append(listener)
    return lambda: _error_listeners.remove(listener) if listener in _error_listeners else None


def stt_stream_event(event: str) -> None:
    """`reconnect`, `rotation` or `failover` of a call's recognition stream."""
    STT_STREAM_EVENTS.labels(event).inc()


def tts_cache(result: str) -> None:
    """One sentence asked of the TTS cache: `hit`, `miss` or `skip`."""
    TTS_CACHE.labels(result).inc()


def outbox_failure(channel: str, outcome: str) -> None:
    """One failed outbox delivery attempt on `channel` (telegram, sms, email, webhook);
    `outcome`: retry, failed or channel_down."""
    OUTBOX_FAILURES.labels(channel or "unknown", outcome).inc()


class _CallbackGauges(Collector):
    """Gauges read at scrape time from callbacks, e.g. the outbox queue depth."""

    def __init__(self) -> None:
        self.sources: dict[str, tuple[str, Callable[[], float | None]]] = {}

    def collect(self) -> Any:
        for name, (doc, read) in sorted(self.sources.items()):
            try:
                value = read()
            except Exception:  # a scrape must not fail because one source did
                continue
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))


_CALLBACKS = _CallbackGauges()


def register_gauge_callback(name: str, doc: str, read: Callable[[], float | None]) -> None:
    """Expose `read()` as gauge `name` at every scrape (from the scraped worker only:
    meant for values every worker sees alike, such as the outbox depth in the shared
    database). `read` must be cheap and must not block."""
    if not name.startswith("voicebot_"):
        raise ValueError(f"metric {name!r} must start with voicebot_")
    _CALLBACKS.sources[name] = (doc, read)


def unregister_gauge_callback(name: str) -> None:
    """Remove a gauge registered with `register_gauge_callback`."""
    _CALLBACKS.sources.pop(name, None)


def register_outbox(depth: Callable[[], float | None]) -> None:
    """Expose the notification outbox's queue depth (rows not yet delivered), read at
    scrape time from `depth()`; failures are counted with `outbox_failure`."""
    register_gauge_callback(
        OUTBOX_DEPTH_METRIC,
        "Notifications waiting in the outbox (not yet delivered, shared by all workers).",
        depth,
    )


# ------------------------------------------------------------------- exposition


def multiprocess_dir() -> str | None:
    """The shared sample directory of several workers, or None in one-process mode."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def render() -> tuple[bytes, str]:
    """The text exposition (body, content type) of every worker's samples."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_CALLBACKS)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (the supervisor calls this when one exits)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


if not multiprocess_dir():
    REGISTRY.register(_CALLBACKS)
