"""HTML rendering for the salon's page: Jinja2 with autoescaping on (every value a
caller said — names, transcripts — is untrusted text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from voicebot.redact import mask_number

TEMPLATES = Path(__file__).resolve().parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["masked"] = mask_number
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
