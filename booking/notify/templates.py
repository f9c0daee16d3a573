"""Notification texts from prompts/notifications.yaml, rendered from an outbox row's data
(pure: data in, text out). The admin never sees a full client phone in a chat message:
`{phone_masked}` keeps the country code, operator code and the last two digits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from booking.extract.phone import format_phone

TEMPLATES_FILE = Path(__file__).resolve().parents[2] / "prompts" / "notifications.yaml"
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message: subject (e-mail only, else empty) and text."""

    subject: str
    text: str


def mask_readable(phone: str) -> str:
    """«+7 916 ***-**-67» for +7 numbers; otherwise digits masked but the last two."""
    if not phone:
        return "—"
    digits = phone.lstrip("+")
    if phone.startswith("+7") and len(digits) == 11:
        return f"+7 {digits[1:4]} ***-**-{digits[9:11]}"
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:]


def fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The placeholders of a row's data (booking JSON + salon + handoff fields)."""
    out: dict[str, Any] = {k: v for k, v in data.items() if isinstance(v, str | int | float)}
    start = data.get("start")
    if start:
        dt = datetime.fromisoformat(str(start))
        out.update(
            date=dt.strftime("%d.%m.%Y"), time=dt.strftime("%H:%M"), weekday=WEEKDAYS[dt.weekday()]
        )
    out["service"] = data.get("service_name") or data.get("service") or ""
    out["phone_masked"] = mask_readable(str(data.get("phone") or ""))
    out.setdefault("phone_display", format_phone(str(data.get("phone") or "")))
    for key in ("salon", "address", "master", "name", "id", "reason", "wanted", "price"):
        out.setdefault(key, "")
    for key in ("date", "time", "weekday"):
        out.setdefault(key, "")
    return out


class Templates:
    """kind → channel → template string."""

    def __init__(self, path: str | Path | None = None) -> None:
        raw = yaml.safe_load(Path(path or TEMPLATES_FILE).read_text(encoding="utf-8")) or {}
        self._t: dict[str, dict[str, str]] = {k: dict(v or {}) for k, v in raw.items()}

    def has(self, kind: str, channel: str) -> bool:
        """Whether a template exists (webhook needs none: it posts the data)."""
        return channel in self._t.get(kind, {})

    def render(self, kind: str, channel: str, data: Mapping[str, Any]) -> Rendered:
        """The message; KeyError when the template or a placeholder is missing."""
        f = fields(data)
        t = self._t[kind]
        subject = t.get("email_subject", "").format(**f) if channel == "email" else ""
        return Rendered(subject=subject, text=t[channel].format(**f))
