"""Keep secrets and personal data out of logs and printed output."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`; a query
    string (webhook tokens) is dropped too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if "@" not in parts.netloc and not parts.query:
        return url  # nothing secret (and sqlite:/// keeps its empty host)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mask_number(number: str | None) -> str:
    """A phone number for a log line: only the last two digits survive (`+*********67`)."""
    if not number:
        return "-"
    return re.sub(r"\d(?=(?:\D*\d){2})", "*", number)
