"""Which speech recognizer a call uses, and what it fails over to.

Selection follows the usual multi-provider order: an explicit provider (per call,
`--stt`), else the configured preference, else the first configured provider (Yandex
first: it is the default and the reference). Providers are built lazily, on their first
stream, so an unused vendor costs nothing and a broken optional one cannot stop start-up.

Settings live under `stt:` in config.yaml (read from `cfg.domain["stt"]` until the typed
config grows a section); keys come from the environment only:

    stt:
      provider: deepgram          # preference; "" = first configured
      failover: [yandex, soniox]  # next providers, in order, for a live call
      failover_after_losses: 2    # connection losses in a row before switching
      elevenlabs: {url: ..., model_id: scribe_v2_realtime, commit_strategy: vad, ...}
      deepgram:   {url: ..., model: nova-3, utterance_end_ms: 1000, ...}
      soniox:     {url: ..., model: stt-rt-v3, ...}
      # each provider section may also hold `policy: {max_reconnects, backoff_s, ...}`

    ELEVENLABS_API_KEY, DEEPGRAM_API_KEY, SONIOX_API_KEY

Offline (the runtime runs on the Yandex emulator) a provider without a key is served by
its local fake server, started on first use and sharing the emulator's transcript
scripts, so `voicebot simulate --stt deepgram` works with no network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voicebot.config import Config
from voicebot.providers.base import RecognitionOptions, RecognitionStream, SpeechRecognizer
from voicebot.providers.deepgram import DeepgramSettings
from voicebot.providers.elevenlabs import ElevenLabsSettings
from voicebot.providers.failover import FailoverRecognizer
from voicebot.providers.soniox import SonioxSettings
from voicebot.providers.wsstream import StreamPolicy

if TYPE_CHECKING:
    from voicebot.emulator.fakes import FakeServer
    from voicebot.emulator.main import Emulator

log = logging.getLogger(__name__)

PROVIDERS = ("yandex", "elevenlabs", "deepgram", "soniox")
KEY_ENV = {
    "elevenlabs": "ELEVENLABS_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
    "soniox": "SONIOX_API_KEY",
}
OFFLINE_KEY = "offline-fake-key"  # what clients send to a local fake that checks no key


@dataclass
class SttProviderSettings:
    """The `stt:` section."""

    provider: str = ""
    failover: list[str] = field(default_factory=list)
    failover_after_losses: int = 2
    elevenlabs: ElevenLabsSettings = field(default_factory=ElevenLabsSettings)
    deepgram: DeepgramSettings = field(default_factory=DeepgramSettings)
    soniox: SonioxSettings = field(default_factory=SonioxSettings)

    def vendor(self, name: str) -> Any:
        return getattr(self, name)

    def redacted(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in KEY_ENV:
            if d[name].get("api_key"):
                d[name]["api_key"] = "***"
        return d


def _build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a mapping; unknown keys are errors, nested dataclasses recurse."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ValueError(f"config: {where} must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"config: unknown setting {where}.{key}")
        if key == "api_key":
            raise ValueError(
                f"config: {where}.api_key must come from the environment ({KEY_ENV.get(where.split('.')[-1], 'env')})"
            )
        hint = hints[key]
        kwargs[key] = (
            _build(hint, value, f"{where}.{key}") if dataclasses.is_dataclass(hint) else value
        )
    return cls(**kwargs)


def load_stt_settings(cfg: Config, env: Mapping[str, str] | None = None) -> SttProviderSettings:
    """The `stt:` section plus the API keys from the environment."""
    env = os.environ if env is None else env
    s: SttProviderSettings = _build(SttProviderSettings, cfg.domain.get("stt") or {}, "stt")
    for name in [s.provider, *s.failover]:
        if name and name not in PROVIDERS:
            raise ValueError(
                f"config: unknown STT provider {name!r} (known: {', '.join(PROVIDERS)})"
            )
    for name, var in KEY_ENV.items():
        if env.get(var):
            s.vendor(name).api_key = env[var]
    return s


def configured(settings: SttProviderSettings, *, yandex: bool, offline: bool = False) -> list[str]:
    """Providers usable now, in default order: Yandex when given, vendors with a key
    (offline: all of them, on their fakes)."""
    out = ["yandex"] if yandex else []
    out += [n for n in KEY_ENV if offline or settings.vendor(n).api_key]
    return out


def select_provider(
    name: str | None, settings: SttProviderSettings, *, yandex: bool, offline: bool = False
) -> str:
    """Explicit, else preference, else first configured."""
    usable = configured(settings, yandex=yandex, offline=offline)
    if name:
        if name not in PROVIDERS:
            raise ValueError(f"unknown STT provider {name!r} (known: {', '.join(PROVIDERS)})")
        if name not in usable:
            hint = f"set {KEY_ENV[name]}" if name in KEY_ENV else "configure Yandex credentials"
            raise ValueError(f"STT provider {name!r} is not configured ({hint})")
        return name
    if settings.provider:
        if settings.provider in usable:
            return settings.provider
        log.warning(
            "preferred STT provider %r is not configured; using the first one that is",
            settings.provider,
        )
    if not usable:
        raise ValueError("no STT provider is configured")
    return usable[0]


class LazyRecognizer:
    """Builds its recognizer (and, offline, starts its fake server) on the first stream."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self._inner: SpeechRecognizer | None = None
        self._lock = asyncio.Lock()
        self.fake: FakeServer | None = None  # offline only

    @property
    def started(self) -> bool:
        return self._inner is not None

    async def get(self) -> SpeechRecognizer:
        async with self._lock:
            if self._inner is None:
                made = self._factory()
                self._inner = await made if asyncio.iscoroutine(made) else made
                log.info("STT provider %s initialised", self.name)
            return self._inner

    async def open_stream(self, options: RecognitionOptions) -> RecognitionStream:
        return await (await self.get()).open_stream(options)

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        close = getattr(inner, "aclose", None)
        if close is not None:
            await close()
        if self.fake is not None:
            await self.fake.stop()
            self.fake = None


def _vendor_client(name: str, settings: Any) -> SpeechRecognizer:
    if name == "elevenlabs":
        from voicebot.providers.elevenlabs import ElevenLabsSTT

        return ElevenLabsSTT(settings)
    if name == "deepgram":
        from voicebot.providers.deepgram import DeepgramSTT

        return DeepgramSTT(settings)
    from voicebot.providers.soniox import SonioxSTT

    return SonioxSTT(settings)


def _lazy_vendor(
    name: str, settings: SttProviderSettings, emulator: Emulator | None
) -> LazyRecognizer:
    vs = settings.vendor(name)
    lazy = LazyRecognizer(name, lambda: None)
    if vs.api_key or emulator is None:
        lazy._factory = lambda: _vendor_client(name, vs)
        return lazy

    async def with_fake() -> SpeechRecognizer:
        from voicebot.emulator.fakes import make_fake

        stt = getattr(emulator, "stt", None)
        fake = make_fake(name, registry=getattr(stt, "scripts", None))
        fake.set_script(getattr(stt, "script", []) or [])
        await fake.start()
        lazy.fake = fake
        log.warning(
            "STT %s runs OFFLINE on a local fake server (a test double) at %s", name, fake.url
        )
        return _vendor_client(name, dataclasses.replace(vs, url=fake.url, api_key=OFFLINE_KEY))

    lazy._factory = with_fake
    return lazy


def build_recognizer(
    name: str | None,
    cfg: Config,
    *,
    yandex: SpeechRecognizer | None,
    emulator: Emulator | None = None,
    endpoints_override: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> SpeechRecognizer:
    """The recognizer for a call or process: the selected provider, wrapped in a
    `FailoverRecognizer` when `stt.failover` names further configured providers.

    `yandex`: the Yandex recognizer (the runtime already has one). `emulator`: offline,
    vendors without a key run on local fakes. `endpoints_override`: provider -> URL (e.g.
    `start_fakes().urls`), taking precedence over config; such a vendor counts as configured.
    The result has `aclose()`.
    """
    settings = load_stt_settings(cfg, env)
    for prov, url in (endpoints_override or {}).items():
        if prov not in KEY_ENV:
            raise ValueError(f"endpoints_override: unknown provider {prov!r}")
        vs = settings.vendor(prov)
        vs.url = url
        vs.api_key = vs.api_key or OFFLINE_KEY
    offline = emulator is not None
    primary = select_provider(name, settings, yandex=yandex is not None, offline=offline)
    usable = configured(settings, yandex=yandex is not None, offline=offline)
    chain = [primary]
    for p in settings.failover:
        if p in chain:
            continue
        if p not in usable:
            log.warning("STT failover provider %r is not configured; skipped", p)
            continue
        chain.append(p)

    def make(p: str) -> SpeechRecognizer:
        if p == "yandex":
            assert yandex is not None
            return yandex
        return _lazy_vendor(p, settings, emulator)

    recs = [make(p) for p in chain]
    log.info("STT providers: %s", " -> ".join(chain))
    if len(recs) == 1:  # nothing to fail over to: no wrapper on the audio path
        return recs[0]
    owned = [r for r in recs if r is not yandex]  # the runtime closes its own Yandex client
    return FailoverRecognizer(recs, loss_threshold=settings.failover_after_losses, owns=owned)


__all__ = [
    "PROVIDERS",
    "FailoverRecognizer",
    "LazyRecognizer",
    "StreamPolicy",
    "SttProviderSettings",
    "build_recognizer",
    "configured",
    "load_stt_settings",
    "select_provider",
]
