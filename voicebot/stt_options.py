"""Options of the WebSocket STT vendors (`stt.<vendor>:` in config.yaml), no I/O.

Each vendor client takes only its own options object. Keys (`api_key`) come from the
environment only (ELEVENLABS_API_KEY, DEEPGRAM_API_KEY, SONIOX_API_KEY), never from the
file, and never appear in reprs or logs. Reconnect, replay, backoff and keep-alive are
not vendor options: the engine's `engine.recovery` owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ELEVENLABS_URL = "wss://api.elevenlabs.io/v1/speech-to-text/realtime"
DEEPGRAM_URL = "wss://api.deepgram.com/v1/listen"
SONIOX_URL = "wss://stt-rt.soniox.com/transcribe-websocket"

# Vendor keys from before the engine owned recovery: accepted, ignored with a warning.
RETIRED_POLICY_KEYS = frozenset(
    {"max_reconnects", "backoff_s", "backoff_max_s", "replay_max_s", "keepalive_s"}
)
RETIRED_VENDOR_KEYS = frozenset({"keepalive_silence_ms"})
OFFLINE_KEY = "offline-fake-key"  # what clients send to a local fake that checks no key


@dataclass
class StreamPolicy:
    """One WebSocket connection's protocol timeouts (s) and its send queue bound."""

    open_timeout_s: float = 5.0  # handshake + readiness
    finish_timeout_s: float = 5.0  # wait for the last results after the graceful end
    max_pending_s: float = 30.0  # unsent audio kept while the socket stalls


@dataclass
class ElevenLabsSettings:
    """ElevenLabs Scribe Realtime (`stt.elevenlabs`)."""

    url: str = ELEVENLABS_URL
    api_key: str = field(default="", repr=False)
    model_id: str = "scribe_v2_realtime"
    language_code: str = ""  # empty: from RecognitionOptions.language ("ru-RU" -> "ru")
    commit_strategy: str = "vad"  # or "manual": the stream commits on finish() / commit()
    vad_silence_threshold_secs: float | None = None  # None: RecognitionOptions.eou_pause_ms
    vad_threshold: float = 0.4
    min_speech_duration_ms: int = 100
    min_silence_duration_ms: int = 100
    include_timestamps: bool = True
    keyterms: list[str] = field(default_factory=list)
    twin_timeout_s: float = 0.3  # how long a plain commit waits for its timestamped twin
    policy: StreamPolicy = field(default_factory=StreamPolicy)

    def __post_init__(self) -> None:
        if self.commit_strategy not in ("vad", "manual"):
            raise ValueError("elevenlabs commit_strategy must be 'vad' or 'manual'")


@dataclass
class DeepgramSettings:
    """Deepgram Live (`stt.deepgram`)."""

    url: str = DEEPGRAM_URL
    api_key: str = field(default="", repr=False)
    model: str = "nova-3"
    language: str = ""  # empty: from RecognitionOptions.language ("ru-RU" -> "ru")
    endpointing_ms: int | None = None  # None: RecognitionOptions.eou_pause_ms
    utterance_end_ms: int = 1000  # Deepgram: values under 1000 give no benefit
    smart_format: bool = True
    punctuate: bool = True
    extra_params: dict[str, str] = field(default_factory=dict)
    policy: StreamPolicy = field(default_factory=StreamPolicy)


@dataclass
class SonioxSettings:
    """Soniox RT (`stt.soniox`)."""

    url: str = SONIOX_URL
    api_key: str = field(default="", repr=False)
    model: str = "stt-rt-v3"
    language_hints: list[str] = field(default_factory=list)  # empty: from RecognitionOptions
    max_endpoint_delay_ms: int | None = None  # None: RecognitionOptions.eou_pause_ms (500..3000)
    context: dict[str, Any] | None = None
    policy: StreamPolicy = field(default_factory=StreamPolicy)


VendorOptions = ElevenLabsSettings | DeepgramSettings | SonioxSettings


STT_PROVIDERS = ("yandex", "elevenlabs", "deepgram", "soniox")
VENDOR_KEY_ENV = {
    "elevenlabs": "ELEVENLABS_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
    "soniox": "SONIOX_API_KEY",
}


@dataclass
class SttProviders:
    """`stt:`: which recognizer a call uses and what it fails over to.

    Order: `--stt`, then `provider`, then the first configured (yandex, elevenlabs,
    deepgram, soniox). Vendor API keys only from the environment (`VENDOR_KEY_ENV`).
    """

    provider: str = ""  # "" = the first configured
    failover: list[str] = field(default_factory=list)  # next providers for a live call
    elevenlabs: ElevenLabsSettings = field(default_factory=ElevenLabsSettings)
    deepgram: DeepgramSettings = field(default_factory=DeepgramSettings)
    soniox: SonioxSettings = field(default_factory=SonioxSettings)

    def __post_init__(self) -> None:
        for name in [self.provider, *self.failover]:
            if name and name not in STT_PROVIDERS:
                raise ValueError(
                    f"config: unknown STT provider {name!r} (known: {', '.join(STT_PROVIDERS)})"
                )

    def vendor(self, name: str) -> ElevenLabsSettings | DeepgramSettings | SonioxSettings:
        """The options of vendor `name` (one of `VENDOR_KEY_ENV`)."""
        options: ElevenLabsSettings | DeepgramSettings | SonioxSettings = getattr(self, name)
        return options
