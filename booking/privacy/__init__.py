"""Personal data under 152-FZ: the notice, retention, deletion on request, identity proof.

`PrivacySettings` is the typed `privacy:` config section; `act` renders what a purge or
a deletion removed; `identity` decides whether a caller may hear or cancel a booking;
`cli` is `voicebot privacy purge|forget`; `retention` runs the purge daily in `serve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """The `privacy:` section of config.yaml.

    notice: spoken before the greeting on every call; "" turns it off.
    retention_days: call records (transcripts, summaries) older than this are deleted.
    booking_retention_days: a booking's name and phone are erased this many days after
        the visit ended (the time, master and service stay for the salon's numbers).
    purge_every_h: how often `voicebot serve` runs the purge (hours).
    """

    notice: str = ""
    retention_days: int = 90
    booking_retention_days: int = 365
    purge_every_h: float = 24.0

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> PrivacySettings:
        """Parse the section; an unknown key or a non-positive term is a ValueError."""
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"config: unknown setting privacy.{sorted(unknown)[0]}")
        d = cls()  # defaults (class attributes of a slots dataclass are descriptors)
        s = cls(
            notice=str(raw.get("notice") or "").strip(),
            retention_days=int(raw.get("retention_days", d.retention_days)),
            booking_retention_days=int(raw.get("booking_retention_days", d.booking_retention_days)),
            purge_every_h=float(raw.get("purge_every_h", d.purge_every_h)),
        )
        if s.retention_days < 1 or s.booking_retention_days < 0 or s.purge_every_h <= 0:
            raise ValueError("config: privacy terms must be positive")
        return s
