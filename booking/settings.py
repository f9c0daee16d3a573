"""`BookingSettings`: the `booking:` config section, parsed and checked in one place.

The engine passes its domain sections through untyped (`Config.domain`); this is
where the booking bot turns `booking:` into typed values. A key not listed here is a
start-up error, like an unknown engine key, so a typo never silently falls back to a
default. Owners of sub-sections (`salon`/`services`/`masters`: `Catalog`; the booking
backends) parse their own parts from `section`, but every top-level key is declared in
`KNOWN_KEYS` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from booking.catalog import Catalog
from voicebot.redact import redact_url

DEFAULT_STORE = "sqlite:///data/voicebot.sqlite3"
USE_LLM = ("auto", "never", "always")

# Every top-level key of `booking:`; each is parsed below or by the named owner.
KNOWN_KEYS = frozenset(
    {
        "backend",  # booking.backends.factory
        "store",
        "use_llm",
        "llm_timeout_s",
        "max_silence_prompts",
        "webhook_url",
        "templates",
        "faq",  # free questions' grounding facts: booking.faq.FaqSettings
        "slot_step_min",  # Catalog
        "salon",  # Catalog
        "services",  # Catalog
        "masters",  # Catalog
        "yclients",  # booking.yclients (backend: yclients)
    }
)


@dataclass(frozen=True, slots=True)
class BookingSettings:
    """The booking bot's settings.

    `store`: the store URL (`sqlite:///path` or `postgresql://...`); the command line's
    `--store` wins over the config. `use_llm`: `auto` (YandexGPT only when the parsers
    understood nothing), `never` or `always`. `llm_timeout_s`: past this (seconds) the
    deterministic result stands. `max_silence_prompts`: «Вы меня слышите?» this many
    times, then a goodbye. `webhook_url`: POSTed with each new booking ("" = off).
    `templates`: a reply-templates YAML path (None = the shipped one).
    `section`: the raw mapping, for sub-sections parsed by their owners.
    """

    catalog: Catalog
    backend: str = "local"
    store: str = DEFAULT_STORE
    use_llm: str = "auto"
    llm_timeout_s: float = 1.5
    max_silence_prompts: int = 3
    webhook_url: str = field(default="", repr=False)  # may carry a token
    templates: str | None = None
    section: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(
        cls, section: Mapping[str, Any] | None, *, store_override: str | None = None
    ) -> BookingSettings:
        """Parse `booking:`; raises ValueError naming the bad key."""
        raw = dict(section or {})
        unknown = sorted(set(raw) - KNOWN_KEYS)
        if unknown:
            raise ValueError(f"config: unknown setting booking.{unknown[0]}")
        use_llm = str(raw.get("use_llm", "auto")).lower()
        if use_llm not in USE_LLM:
            raise ValueError(f"config: booking.use_llm must be one of {', '.join(USE_LLM)}")
        return cls(
            catalog=Catalog.from_config(raw),
            backend=str(raw.get("backend") or "local"),
            store=str(store_override or raw.get("store") or DEFAULT_STORE),
            use_llm=use_llm,
            llm_timeout_s=_number(raw, "llm_timeout_s", 1.5),
            max_silence_prompts=int(_number(raw, "max_silence_prompts", 3)),
            webhook_url=str(raw.get("webhook_url") or ""),
            templates=str(raw["templates"]) if raw.get("templates") else None,
            section=raw,
        )

    def redacted(self) -> dict[str, Any]:
        """The `booking:` section as it may be logged: store and webhook URLs without
        passwords or query tokens."""
        out = dict(self.section)
        for key in ("store", "webhook_url"):
            if out.get(key):
                out[key] = redact_url(str(out[key]))
        return {"booking": out}

    def public_info(self) -> dict[str, str]:
        """What a browser page may show before a call: the salon's name, address, zone."""
        salon = self.catalog.salon
        return {"name": salon.name, "address": salon.address, "timezone": salon.timezone}


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"config: booking.{key} must be a number")
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"config: booking.{key} must be a number") from exc
