"""HTML rendering for the salon's page: Jinja2 with autoescaping on (every value a
caller said — names, transcripts — is untrusted text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from booking.extract.phone import format_phone

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
# A run of 9+ digits with separators: every phone spelling a caller or a summary uses.
_PHONE_LIKE = re.compile(r"(?:\+\s*)?\d[\d\s\-()]{8,}\d")


def masked_phone(e164: str) -> str:
    """«+7 916 123-45-67» shown as «+7 *** ***-**-67»: the page reveals it on a click."""
    shown = format_phone(e164)
    digits = [i for i, ch in enumerate(shown) if ch.isdigit()]
    keep = set(digits[-2:]) | ({digits[0]} if shown.startswith("+7") and digits else set())
    return "".join("*" if i in digits and i not in keep else ch for i, ch in enumerate(shown))


def hide_phones(text: str) -> str:
    """Free text (a transcript line, a summary) with every phone-like run masked."""
    return _PHONE_LIKE.sub(lambda m: re.sub(r"\d(?=(?:\D*\d){2})", "*", m.group()), text or "")


def masked_short(e164: str) -> str:
    """«тел. …67»: a masked phone that fits a 15-minute block on a phone screen."""
    digits = re.sub(r"\D", "", e164)
    return f"тел. …{digits[-2:]}"


_env.filters["masked"] = masked_phone
_env.filters["masked_short"] = masked_short
_env.filters["hide_phones"] = hide_phones
_env.filters["hhmm"] = lambda dt: f"{dt.hour:02d}:{dt.minute:02d}"


def page(name: str, *, status: int = 200, **context: Any) -> web.Response:
    """Render `templates/<name>` into an HTML response that no cache keeps."""
    html = _env.get_template(name).render(**context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
