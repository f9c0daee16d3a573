"""`booking.yclients:` parsed into a typed, frozen settings object.

Tokens are never in the file: `YCLIENTS_PARTNER_TOKEN` and `YCLIENTS_USER_TOKEN` come
from the environment. Unknown keys are errors, like everywhere in the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Flavor = Literal["yclients", "altegio"]

BASE_URLS: dict[str, str] = {
    "yclients": "https://api.yclients.com/api/v1",
    "altegio": "https://api.alteg.io/api/v1",
}
EMULATOR = "emulator"  # base_url value: start the in-process test double (simulate/demo)


@dataclass(frozen=True, slots=True)
class YclientsSettings:
    """Connection and mapping for one salon (company) in YCLIENTS/Altegio.

    `service_map` / `staff_map`: {YCLIENTS id: catalog service id / master name},
    overriding the default case-insensitive match by name. `form_id`: the online booking
    form whose settings are checked at start (SMS confirmation makes the bot unable to
    book). `notify_by_sms` / `notify_by_email`: hours before the visit YCLIENTS itself
    reminds the client (0: YCLIENTS sends nothing). Intervals in seconds.
    """

    base_url: str = ""
    company_id: int = 0
    flavor: Flavor = "yclients"
    service_map: dict[int, str] = field(default_factory=dict)
    staff_map: dict[int, str] = field(default_factory=dict)
    form_id: int = 0
    notify_by_sms: int = 0
    notify_by_email: int = 0
    catalog_refresh_s: float = 3600.0
    times_cache_s: float = 5.0
    timeout_s: float = 5.0
    rate_per_s: float = 5.0
    max_retries: int = 4
    days_ahead: int = 60
    partner_token: str = field(default="", repr=False)
    user_token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        """The API root without a trailing slash (the flavor's default when unset)."""
        return (self.base_url or BASE_URLS[self.flavor]).rstrip("/")

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, env: Mapping[str, str]) -> YclientsSettings:
        """Parse the section; raises ValueError on unknown keys or bad values."""
        raw = dict(raw or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"partner_token", "user_token"}
        for key in raw:
            if key not in known:
                raise ValueError(f"config: unknown setting booking.yclients.{key}")
        flavor = str(raw.get("flavor", "yclients"))
        if flavor not in BASE_URLS:
            raise ValueError("config: booking.yclients.flavor must be yclients or altegio")
        kw: dict[str, Any] = {k: v for k, v in raw.items() if k not in {"service_map", "staff_map"}}
        kw["flavor"] = flavor
        kw["company_id"] = int(raw.get("company_id") or 0)
        kw["service_map"] = {int(k): str(v) for k, v in (raw.get("service_map") or {}).items()}
        kw["staff_map"] = {int(k): str(v) for k, v in (raw.get("staff_map") or {}).items()}
        for name in ("form_id", "notify_by_sms", "notify_by_email", "max_retries", "days_ahead"):
            if name in kw:
                kw[name] = int(kw[name] or 0)
        for name in ("catalog_refresh_s", "times_cache_s", "timeout_s", "rate_per_s"):
            if name in kw:
                kw[name] = float(kw[name])
        kw["base_url"] = str(raw.get("base_url") or "")
        return cls(
            **kw,
            partner_token=env.get("YCLIENTS_PARTNER_TOKEN", ""),
            user_token=env.get("YCLIENTS_USER_TOKEN", ""),
        )
