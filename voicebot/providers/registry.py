"""Which speech recognizer a call uses, and what it fails over to.

Selection follows the usual multi-provider order: an explicit provider (per call,
`--stt`), else the configured preference, else the first configured provider (Yandex
first: it is the default and the reference). Providers are built lazily, on their first
stream, so an unused vendor costs nothing and a broken optional one cannot stop start-up.

Settings are the typed `Config.stt` (`voicebot/config.py`, the `stt:` section); vendor
keys come from the environment only (ELEVENLABS_API_KEY, DEEPGRAM_API_KEY,
SONIOX_API_KEY). When to fail over is the engine's decision (`engine/recovery.py`).

Offline (the runtime runs on the Yandex emulator) a provider without a key is served by
its local fake server, started on first use and sharing the emulator's transcript
scripts, so `voicebot simulate --stt deepgram` works with no network.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from voicebot.providers.base import RecognitionOptions, RecognitionStream, SpeechRecognizer
from voicebot.providers.failover import FailoverRecognizer
from voicebot.stt_options import (
    OFFLINE_KEY,
    STT_PROVIDERS,
    VENDOR_KEY_ENV,
    DeepgramSettings,
    ElevenLabsSettings,
    SttProviders,
    VendorOptions,
)

log = logging.getLogger(__name__)

PROVIDERS = STT_PROVIDERS
KEY_ENV = VENDOR_KEY_ENV


def configured(settings: SttProviders, *, yandex: bool, offline: bool = False) -> list[str]:
    """Providers usable now, in default order: Yandex when given, vendors with a key
    (offline: all of them, on their fakes)."""
    out = ["yandex"] if yandex else []
    out += [n for n in KEY_ENV if offline or settings.vendor(n).api_key]
    return out


def select_provider(
    name: str | None, settings: SttProviders, *, yandex: bool, offline: bool = False
) -> str:
    """Explicit, else preference, else first configured. Raises ValueError."""
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


class OfflineVendors(Protocol):
    """Local stand-ins for the STT vendors when the runtime runs offline (the
    emulator's `VendorFakes`, a test double): handed in by the runtime."""

    async def serve(self, name: str, options: VendorOptions) -> tuple[VendorOptions, Any]:
        """Start `name`'s fake; return options pointing at it, and the fake itself."""
        ...


class LazyRecognizer:
    """Builds its recognizer (and, offline, has its fake server started) on the first stream."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self._inner: SpeechRecognizer | None = None
        self._lock = asyncio.Lock()
        self.fake: Any = None  # offline only: the local fake serving this vendor

    @property
    def started(self) -> bool:
        """The client has been built (a stream was opened)."""
        return self._inner is not None

    async def get(self) -> SpeechRecognizer:
        """The client, built on first use."""
        async with self._lock:
            if self._inner is None:
                made = self._factory()
                self._inner = await made if asyncio.iscoroutine(made) else made
                log.info("STT provider %s initialised", self.name)
            return self._inner

    async def open_stream(self, options: RecognitionOptions) -> RecognitionStream:
        """A stream of the (now built) client."""
        return await (await self.get()).open_stream(options)

    async def aclose(self) -> None:
        """Close the client (its offline fake belongs to whoever started it)."""
        inner, self._inner = self._inner, None
        close = getattr(inner, "aclose", None)
        if close is not None:
            await close()


def _vendor_client(options: VendorOptions) -> SpeechRecognizer:
    """The vendor's client, given only its own options."""
    if isinstance(options, ElevenLabsSettings):
        from voicebot.providers.elevenlabs import ElevenLabsSTT

        return ElevenLabsSTT(options)
    if isinstance(options, DeepgramSettings):
        from voicebot.providers.deepgram import DeepgramSTT

        return DeepgramSTT(options)
    from voicebot.providers.soniox import SonioxSTT

    return SonioxSTT(options)


def _lazy_vendor(name: str, vs: VendorOptions, offline: OfflineVendors | None) -> LazyRecognizer:
    lazy = LazyRecognizer(name, lambda: None)
    if vs.api_key or offline is None:
        lazy._factory = lambda: _vendor_client(vs)
        return lazy

    async def with_fake() -> SpeechRecognizer:
        served, lazy.fake = await offline.serve(name, vs)
        return _vendor_client(served)

    lazy._factory = with_fake
    return lazy


def build_recognizer(
    name: str | None,
    settings: SttProviders,
    *,
    yandex: SpeechRecognizer | None,
    offline: OfflineVendors | None = None,
    endpoints_override: Mapping[str, str] | None = None,
) -> SpeechRecognizer:
    """The recognizer for a call or process: the selected provider, wrapped in a
    `FailoverRecognizer` when `stt.failover` names further configured providers.

    `yandex`: the Yandex recognizer (the runtime already has one). `offline`: the
    runtime runs on the emulator, and vendors without a key run on its local fakes. `endpoints_override`: provider -> URL (e.g.
    `start_fakes().urls`), taking precedence over config; such a vendor counts as configured.
    The result has `aclose()`. Raises ValueError for an unknown or unconfigured provider.
    """
    settings = copy.deepcopy(settings)
    for prov, url in (endpoints_override or {}).items():
        if prov not in KEY_ENV:
            raise ValueError(f"endpoints_override: unknown provider {prov!r}")
        vs = settings.vendor(prov)
        vs.url = url
        vs.api_key = vs.api_key or OFFLINE_KEY
    is_offline = offline is not None
    primary = select_provider(name, settings, yandex=yandex is not None, offline=is_offline)
    usable = configured(settings, yandex=yandex is not None, offline=is_offline)
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
        return _lazy_vendor(p, settings.vendor(p), offline)

    recs = [make(p) for p in chain]
    log.info("STT providers: %s", " -> ".join(chain))
    if len(recs) == 1:  # nothing to fail over to: no wrapper on the audio path
        return recs[0]
    owned = [r for r in recs if r is not yandex]  # the runtime closes its own Yandex client
    return FailoverRecognizer(recs, owns=owned)


__all__ = [
    "PROVIDERS",
    "FailoverRecognizer",
    "LazyRecognizer",
    "build_recognizer",
    "configured",
    "select_provider",
]
