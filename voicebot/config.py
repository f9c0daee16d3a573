"""Configuration: `config.yaml` plus environment variables for secrets.

Every setting lives in typed dataclasses with defaults, so code reads
`cfg.engine.echo_tail_ms` instead of digging in dicts, and a typo in the YAML is an
error at start-up rather than a silently ignored key. Secrets and per-deployment values
(folder id, API key, service-account key path, telephony secret) come from the
environment and are never printed: `Config.redacted()` is what gets logged.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voicebot.redact import redact_url
from voicebot.stt_options import (
    RETIRED_POLICY_KEYS,
    RETIRED_VENDOR_KEYS,
    VENDOR_KEY_ENV,
    SttProviders,
)

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


@dataclass
class YandexEndpoints:
    """`yandex.endpoints`: explicit SpeechKit STT/TTS gRPC hosts, the LLM and IAM REST
    bases, TLS."""

    stt: str = "stt.api.cloud.yandex.net:443"
    tts: str = "tts.api.cloud.yandex.net:443"
    llm_url: str = "https://llm.api.cloud.yandex.net"
    iam_url: str = "https://iam.api.cloud.yandex.net"
    tls: bool = True


@dataclass
class SttSettings:
    """`yandex.stt`: language, end-of-utterance pause hint (ms), normalization, model."""

    language: str = "ru-RU"
    eou_pause_ms: int = 700
    normalize: bool = True
    model: str = "general"


@dataclass
class TtsSettings:
    """`yandex.tts`: voice, role and speed of the synthesized bot (None: the voice's own),
    and the size of the cache of repeated sentences (MB, 0: off)."""

    voice: str = "alena"
    role: str | None = None
    speed: float | None = None
    # Repeated sentences (no digits) played from memory: MB of audio, 0 = off
    # (voicebot/providers/tts_cache.py).
    cache_mb: float = 16.0


@dataclass
class GptSettings:
    """`yandex.gpt`: model, temperature, max tokens, timeout (s) and retries on 429/5xx."""

    model: str = "yandexgpt-lite/latest"
    temperature: float = 0.3
    max_tokens: int = 500
    timeout_s: float = 6.0
    max_retries: int = 2


@dataclass
class YandexSettings:
    """`yandex:`: credentials (from the environment only), endpoints and per-API settings."""

    folder_id: str = ""
    api_key: str = field(default="", repr=False)
    sa_key_file: str = ""
    endpoints: YandexEndpoints = field(default_factory=YandexEndpoints)
    stt: SttSettings = field(default_factory=SttSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    gpt: GptSettings = field(default_factory=GptSettings)
    iam_refresh_margin_s: float = 3600.0

    @property
    def has_credentials(self) -> bool:
        """True when an API key or a service-account key file is set (else: offline, on the
        emulator)."""
        return bool(self.api_key or self.sa_key_file)


@dataclass
class EmulatorSettings:
    """`emulator:`: ports (0: any free one), script, limits and latencies of the local test
    double."""

    host: str = "127.0.0.1"
    stt_port: int = 0  # 0: pick a free port (in-process use)
    tts_port: int = 0
    http_port: int = 0
    api_key: str = field(default="", repr=False)
    stt_script: str = ""
    stt_max_stream_s: float = 300.0
    stt_inactivity_s: float = 5.0
    stt_quirks: list[str] = field(
        default_factory=list
    )  # double_final, empty_final, eou_before_final
    tts_ttfb_ms: int = 120
    tts_chunk_ms: int = 100
    gpt_ttft_ms: int = 300
    gpt_tokens_per_s: float = 60.0
    iam_token_ttl_s: float = 43200.0
    # TEST/BENCH ONLY: let a caller hand the emulator its transcript script (browser
    # `start.emulator_utterances`, Voximplant `x-emulator-utterances`, AudioSocket
    # register `utterances`) even when the server runs against cloud-like endpoints.
    client_scripts: bool = False


# Per-channel turn-taking defaults, used where `engine.echo_tail_ms` / `engine.barge_in`
# are left unset (null). Why these values (docs/turn-taking.md):
# * telephony (voximplant, audiosocket): the network's and the handset's echo cancellers
#   (ITU-T G.168) remove acoustic echo before audio reaches us, and our own canceller
#   works on the exact audio we sent, so only the jitter-buffer skew between our playout
#   estimate and the far end remains: a 100 ms tail. Barge-in is on: phone callers
#   expect to interrupt, and the echo defence makes it safe.
# * browser and simulator: loudspeakers and a laptop microphone, output latency that
#   varies by device (Bluetooth adds 150-250 ms): a 150 ms tail after the (acknowledged)
#   end of playback, and gate mode by default, because the room echo is loud and the
#   delay between what we send and what the microphone hears is not known.
CHANNEL_DEFAULTS: dict[str, tuple[int, bool]] = {
    "voximplant": (100, True),
    "audiosocket": (100, True),
    "browser": (150, False),
    "simulator": (150, False),
}
FALLBACK_CHANNEL = (150, False)


@dataclass
class RecoveryPolicy:
    """`engine.recovery`: how a call's recognition survives lost streams.

    The engine's recognizer is the only owner of reconnect, replay, backoff and
    keep-alive; `voicebot/engine/recovery.py` says when to retry, fail over or give up.
    """

    max_attempts: int = 6  # failed streams in a row (no result between) before giving up
    backoff_s: float = 0.2  # pause before retry n: backoff_s * 2**(n-1) ...
    backoff_max_s: float = 5.0  # ... capped at this
    replay_buffer_s: float = 20.0  # caller audio kept to replay onto a new stream
    keepalive_ms: int = 3000  # silence sent when no caller audio flows this long
    rotate_s: float = 285.0  # open a fresh stream before SpeechKit's 5-minute cap
    failover_after_losses: int = 2  # connection losses in a row before the next provider


@dataclass
class EngineSettings:
    """Turn-taking and recognition-stream settings (config section `engine`).

    `echo_tail_ms` (ms after the bot's audio ends during which a word that *starts* is
    still taken for echo) and `barge_in` are per channel when left null: see
    `CHANNEL_DEFAULTS`; a value set here applies to every channel.
    """

    echo_tail_ms: int | None = None
    barge_in: bool | None = None
    barge_in_min_words: int = 2
    # Acoustic echo cancellation of caller audio against the audio we play
    # ("webrtc": WebRTC AEC3 via the livekit binding; "off").
    echo_canceller: str = "webrtc"
    # Recognized words that repeat this many consecutive words the bot played, each
    # starting no later than `echo_text_window_ms` after its bot word started (the
    # longest echo path + word-time error), are echo whatever the playback window.
    echo_text_min_words: int = 2
    echo_text_window_ms: int = 400
    min_voiced_ms: int = 120
    stt_batch_ms: int = 100
    silence_timeout_s: float = 8.0
    speculation: bool = True  # prepare a deterministic reply from a stable partial
    speculation_stable_ms: int = 250  # how long a partial must not change first
    continuation_wait_ms: int = 1500  # wait this long for the rest of an unfinished phrase
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)

    def for_channel(self, channel: str) -> EngineSettings:
        """These settings with the channel's defaults filled in for unset (None) values.

        `channel` is a transport kind ("browser", "voximplant", "audiosocket",
        "simulator", ...); unknown kinds get the browser-like fallback."""
        tail, barge = CHANNEL_DEFAULTS.get(channel, FALLBACK_CHANNEL)
        return dataclasses.replace(
            self,
            echo_tail_ms=tail if self.echo_tail_ms is None else self.echo_tail_ms,
            barge_in=barge if self.barge_in is None else self.barge_in,
        )


@dataclass
class OverloadSettings:
    """Back-pressure thresholds (voicebot/ops/health.py): past them /readyz is 503 and
    new calls hear `server.busy_message`."""

    enabled: bool = True
    window_s: float = 60.0
    min_turns: int = 5  # fewer samples in the window: too few to judge
    error_rate: float = 0.5  # provider errors per turn
    stage_p95_s: float = 4.0  # LLM or TTS wait before the first audio
    recover_s: float = 30.0  # stay "overloaded" this long after the last bad look


@dataclass
class ServerSettings:
    """`server:`: bind address, call capacity, message and session limits, event loop, GC."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 200
    max_message_bytes: int = 65536
    max_session_s: float = 1800.0
    allowed_sample_rates: list[int] = field(default_factory=lambda: [8000, 16000, 48000])
    uvloop: str = "auto"  # auto: when installed (extra `fast`); on: required; off
    gc_freeze: bool = True  # start-up objects leave the GC's scans (fewer loop stalls)
    # Prometheus /metrics: on the main port behind a bearer token (env
    # VOICEBOT_METRICS_TOKEN), and/or without one on a separate loopback-only port.
    metrics_token: str = field(default="", repr=False)
    metrics_port: int = 0  # 0: no separate port
    metrics_host: str = "127.0.0.1"  # must be a loopback address
    workers: int = 1  # `serve --workers N`: processes sharing the ports (SO_REUSEPORT)
    # SIGTERM: stop taking calls, let live ones finish this long, then say goodbye.
    drain_timeout_s: float = 60.0
    goodbye_message: str = "Извините, нам нужно завершить разговор. Пожалуйста, перезвоните."
    busy_message: str = (
        "Извините, сейчас все линии заняты. Пожалуйста, перезвоните через несколько минут."
    )
    # Limits and trust (voicebot/ops/limits.py).
    trusted_proxies: list[str] = field(default_factory=list)  # e.g. [127.0.0.1] behind nginx
    ws_connections_per_address: int = 10  # concurrent /ws connections of one client; 0: off
    ws_messages_per_s: float = 120.0  # per /ws connection (20 ms audio is 50/s); 0: off
    channel_limits: dict[str, int] = field(default_factory=dict)  # e.g. {browser: 50}
    telephony_reserve: int = 0  # slots of max_sessions the browser demo may never take
    overload: OverloadSettings = field(default_factory=OverloadSettings)


@dataclass
class VoximplantSettings:
    """`telephony.voximplant`: the shared secret (environment), max lead over real time
    (ms), reply encoding."""

    secret: str = field(default="", repr=False)
    max_lead_ms: int = 2000
    encoding: str = "ULAW"
    # Bot audio per media message (ms). Voximplant accepts any length ("multiples of
    # 20 ms recommended") and replays it in 20 ms frames itself; config.yaml's 200 ms
    # sends a tenth of the messages 20 ms does (JSON + base64 + WebSocket frame + pacing
    # wake-up each, and the far end's receive) for the same audio. Barge-in is
    # unaffected: the `clear` empties Voximplant's buffer whatever was sent.
    chunk_ms: int = 20
    hangup_margin_ms: int = 300  # after the goodbye's estimated end, before the hang-up


@dataclass
class AudioSocketSettings:
    """`telephony.audiosocket`: the TCP listener for Asterisk's AudioSocket() app."""

    host: str = "127.0.0.1"
    port: int = 9092
    enabled: bool = True
    # POST /audiosocket/register needs `Authorization: Bearer <secret>` (env
    # VOICEBOT_AUDIOSOCKET_SECRET) when set; never expose that path through a proxy.
    register_secret: str = field(default="", repr=False)


@dataclass
class TelephonySettings:
    """`telephony:`: the Voximplant and AudioSocket bridges."""

    voximplant: VoximplantSettings = field(default_factory=VoximplantSettings)
    audiosocket: AudioSocketSettings = field(default_factory=AudioSocketSettings)


@dataclass
class DialogueSettings:
    """`dialogue:`: the dialogue domain (short name or `module:builder`) and the modes a
    caller may pick."""

    factory: str = (
        "booking.bot:build_provider"  # short name (booking, chat, echo) or module:builder
    )
    modes: list[str] = field(default_factory=list)  # more dialogues a browser caller may pick


@dataclass
class Config:
    """The whole typed configuration; domain sections stay untyped for their owners."""

    yandex: YandexSettings = field(default_factory=YandexSettings)
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    telephony: TelephonySettings = field(default_factory=TelephonySettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    stt: SttProviders = field(default_factory=SttProviders)
    # Domain sections (e.g. `booking:`) are passed through untyped to the dialogue
    # factory; the engine does not interpret them.
    domain: dict[str, Any] = field(default_factory=dict)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (one object per line, with call and turn ids)

    def redacted(self, domain: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The whole configuration, safe to log: secrets masked, URLs without passwords
        or query tokens. `voicebot serve` logs this at start-up (DEBUG).

        The engine does not know what is secret in a domain section: `domain` is what
        the dialogue provider's `redacted()` says may be shown; without it the domain
        sections are named but not shown.
        """
        d = dataclasses.asdict(self)
        for path in (
            ("yandex", "api_key"),
            ("emulator", "api_key"),
            ("telephony", "voximplant", "secret"),
            *(("stt", name, "api_key") for name in VENDOR_KEY_ENV),
            ("server", "metrics_token"),
            ("telephony", "audiosocket", "register_secret"),
        ):
            node = d
            for key in path[:-1]:
                node = node[key]
            if node.get(path[-1]):
                node[path[-1]] = "***"
        for name in VENDOR_KEY_ENV:
            d["stt"][name]["url"] = redact_url(d["stt"][name]["url"])
        d["domain"] = dict(domain) if domain is not None else dict.fromkeys(self.domain, "…")
        return d


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "YANDEX_FOLDER_ID": ("yandex", "folder_id"),
    "YANDEX_API_KEY": ("yandex", "api_key"),
    "YANDEX_SA_KEY_FILE": ("yandex", "sa_key_file"),
    "VOICEBOT_VOXIMPLANT_SECRET": ("telephony", "voximplant", "secret"),
    **{var: ("stt", name, "api_key") for name, var in VENDOR_KEY_ENV.items()},
    "VOICEBOT_METRICS_TOKEN": ("server", "metrics_token"),
    "VOICEBOT_AUDIOSOCKET_SECRET": ("telephony", "audiosocket", "register_secret"),
}

# Old names that keep working: the value moves to its new place (both given: an error).
ALIASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("engine", "reconnect_max_attempts"): ("engine", "recovery", "max_attempts"),
    ("engine", "reconnect_backoff_s"): ("engine", "recovery", "backoff_s"),
    ("engine", "replay_buffer_s"): ("engine", "recovery", "replay_buffer_s"),
    ("engine", "silence_keepalive_ms"): ("engine", "recovery", "keepalive_ms"),
    ("engine", "stream_rotate_s"): ("engine", "recovery", "rotate_s"),
    ("stt", "failover_after_losses"): ("engine", "recovery", "failover_after_losses"),
}


def _build(cls: type, data: Any, where: str) -> Any:
    if not dataclasses.is_dataclass(cls):
        return data
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"config: {where or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"config: unknown setting {where + '.' if where else ''}{key}")
        if key == "api_key" and where.startswith("stt."):
            var = VENDOR_KEY_ENV.get(where.split(".")[-1], "the environment")
            raise ValueError(f"config: {where}.api_key must come from the environment ({var})")
        hint = hints[key]
        target = _dataclass_in(hint)
        kwargs[key] = _build(target, value, f"{where}.{key}" if where else key) if target else value
    return cls(**kwargs)


def build_section(cls: type, data: Any, where: str) -> Any:
    """A typed settings dataclass from one untyped config section (domain sections such
    as `chat:` parse themselves with it). Raises ValueError on an unknown key."""
    return _build(cls, data, where)


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _move_aliases(raw: dict[str, Any]) -> None:
    """Old key names keep working: each value moves to its new place."""
    for old, new in ALIASES.items():
        parent = raw.get(old[0])
        if not isinstance(parent, dict) or old[1] not in parent:
            continue
        value = parent.pop(old[1])
        node = raw
        for key in new[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ValueError(f"config: {key} must be a mapping")
            node = child
        if new[-1] in node:
            raise ValueError(f"config: both {'.'.join(old)} and {'.'.join(new)} are set")
        log.info("config: %s is now %s", ".".join(old), ".".join(new))
        node[new[-1]] = value


def _drop_retired_vendor_keys(raw: dict[str, Any]) -> None:
    """Vendor recovery keys from before the engine owned recovery: warned about, ignored."""
    stt = raw.get("stt")
    if not isinstance(stt, dict):
        return
    for name in VENDOR_KEY_ENV:
        section = stt.get(name)
        if not isinstance(section, dict):
            continue
        for key in RETIRED_VENDOR_KEYS & set(section):
            section.pop(key)
            log.warning("config: stt.%s.%s is no longer used (see engine.recovery)", name, key)
        policy = section.get("policy")
        if isinstance(policy, dict):
            for key in RETIRED_POLICY_KEYS & set(policy):
                policy.pop(key)
                log.warning(
                    "config: stt.%s.policy.%s is no longer used (see engine.recovery)", name, key
                )


def config_from_dict(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """A `Config` from already-parsed YAML plus environment overrides (`env`: none
    when None). Raises ValueError for unknown keys and bad values."""
    raw = copy.deepcopy(dict(raw))
    _move_aliases(raw)
    _drop_retired_vendor_keys(raw)
    engine_keys = {f.name for f in dataclasses.fields(Config)} - {"domain"}
    domain = {k: v for k, v in raw.items() if k not in engine_keys}
    cfg: Config = _build(Config, {k: v for k, v in raw.items() if k in engine_keys}, "")
    cfg.domain = domain
    for var, path_ in ENV_OVERRIDES.items():
        if env and env.get(var):
            node: Any = cfg
            for key in path_[:-1]:
                node = getattr(node, key)
            setattr(node, path_[-1], env[var])
    return cfg


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load YAML (default: the repo's config.yaml) and apply environment overrides."""
    env = dict(os.environ) if env is None else env
    p = Path(path) if path else Path(env.get("VOICEBOT_CONFIG", DEFAULT_CONFIG_PATH))
    raw: dict[str, Any] = {}
    if p.exists():
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return config_from_dict(raw, env)
