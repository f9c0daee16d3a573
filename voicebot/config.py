"""Configuration: `config.yaml` plus environment variables for secrets.

Every setting lives in typed dataclasses with defaults, so code reads
`cfg.engine.echo_tail_ms` instead of digging in dicts, and a typo in the YAML is an
error at start-up rather than a silently ignored key. Secrets and per-deployment values
(folder id, API key, service-account key path, telephony secret) come from the
environment and are never printed: `Config.redacted()` is what gets logged.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voicebot.redact import redact_url

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


@dataclass
class YandexEndpoints:
    stt: str = "stt.api.cloud.yandex.net:443"
    tts: str = "tts.api.cloud.yandex.net:443"
    llm_url: str = "https://llm.api.cloud.yandex.net"
    iam_url: str = "https://iam.api.cloud.yandex.net"
    tls: bool = True


@dataclass
class SttSettings:
    language: str = "ru-RU"
    eou_pause_ms: int = 700
    normalize: bool = True
    model: str = "general"


@dataclass
class TtsSettings:
    voice: str = "alena"
    role: str | None = None
    speed: float | None = None


@dataclass
class GptSettings:
    model: str = "yandexgpt-lite/latest"
    temperature: float = 0.3
    max_tokens: int = 500
    timeout_s: float = 6.0
    max_retries: int = 2


@dataclass
class YandexSettings:
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
        return bool(self.api_key or self.sa_key_file)


@dataclass
class EmulatorSettings:
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


@dataclass
class EngineSettings:
    echo_tail_ms: int = 500
    barge_in: bool = False
    barge_in_min_words: int = 2
    min_voiced_ms: int = 120
    stt_batch_ms: int = 100
    stream_rotate_s: float = 285.0
    reconnect_max_attempts: int = 6
    reconnect_backoff_s: float = 0.2
    replay_buffer_s: float = 20.0
    silence_keepalive_ms: int = 3000
    silence_timeout_s: float = 8.0
    speculation: bool = True  # prepare a deterministic reply from a stable partial
    speculation_stable_ms: int = 250  # how long a partial must not change first
    continuation_wait_ms: int = 1500  # wait this long for the rest of an unfinished phrase


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 200
    max_message_bytes: int = 65536
    max_session_s: float = 1800.0
    allowed_sample_rates: list[int] = field(default_factory=lambda: [8000, 16000, 48000])
    uvloop: str = "auto"  # auto: when installed (extra `fast`); on: required; off
    gc_freeze: bool = True  # start-up objects leave the GC's scans (fewer loop stalls)


@dataclass
class VoximplantSettings:
    secret: str = field(default="", repr=False)
    max_lead_ms: int = 2000
    encoding: str = "ULAW"


@dataclass
class AudioSocketSettings:
    host: str = "127.0.0.1"
    port: int = 9092
    enabled: bool = True


@dataclass
class TelephonySettings:
    voximplant: VoximplantSettings = field(default_factory=VoximplantSettings)
    audiosocket: AudioSocketSettings = field(default_factory=AudioSocketSettings)


@dataclass
class DialogueSettings:
    factory: str = (
        "booking.bot:build_provider"  # short name (booking, chat, echo) or module:builder
    )
    modes: list[str] = field(default_factory=list)  # more dialogues a browser caller may pick


@dataclass
class Config:
    yandex: YandexSettings = field(default_factory=YandexSettings)
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    telephony: TelephonySettings = field(default_factory=TelephonySettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    # Domain sections (e.g. `booking:`) are passed through untyped to the dialogue
    # factory; the engine does not interpret them.
    domain: dict[str, Any] = field(default_factory=dict)
    log_level: str = "INFO"

    def redacted(self) -> dict[str, Any]:
        """The whole configuration, safe to log: secrets masked, URLs without passwords
        or query tokens. `voicebot serve` logs this at start-up (DEBUG)."""
        d = dataclasses.asdict(self)
        for path in (
            ("yandex", "api_key"),
            ("emulator", "api_key"),
            ("telephony", "voximplant", "secret"),
        ):
            node = d
            for key in path[:-1]:
                node = node[key]
            if node.get(path[-1]):
                node[path[-1]] = "***"
        booking = d["domain"].get("booking")
        if isinstance(booking, dict):
            d["domain"]["booking"] = {
                **booking,
                **{
                    k: redact_url(str(booking[k]))
                    for k in ("store", "webhook_url")
                    if booking.get(k)
                },
            }
        notify = d["domain"].get("notify")
        if isinstance(notify, dict) and isinstance(notify.get("webhook"), dict):
            hook = notify["webhook"]
            if hook.get("url"):
                d["domain"]["notify"] = {
                    **notify,
                    "webhook": {**hook, "url": redact_url(str(hook["url"]))},
                }
        return d


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "YANDEX_FOLDER_ID": ("yandex", "folder_id"),
    "YANDEX_API_KEY": ("yandex", "api_key"),
    "YANDEX_SA_KEY_FILE": ("yandex", "sa_key_file"),
    "VOICEBOT_VOXIMPLANT_SECRET": ("telephony", "voximplant", "secret"),
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


def load_config(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> Config:
    """Load YAML (default: the repo's config.yaml) and apply environment overrides."""
    env = dict(os.environ) if env is None else env
    p = Path(path) if path else Path(env.get("VOICEBOT_CONFIG", DEFAULT_CONFIG_PATH))
    raw: dict[str, Any] = {}
    if p.exists():
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    engine_keys = {f.name for f in dataclasses.fields(Config)} - {"domain"}
    domain = {k: v for k, v in raw.items() if k not in engine_keys}
    cfg: Config = _build(Config, {k: v for k, v in raw.items() if k in engine_keys}, "")
    cfg.domain = domain
    for var, path_ in ENV_OVERRIDES.items():
        if env.get(var):
            node: Any = cfg
            for key in path_[:-1]:
                node = getattr(node, key)
            setattr(node, path_[-1], env[var])
    return cfg
