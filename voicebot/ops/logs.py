"""Structured logs: every line carries the call id and turn id it belongs to.

The ids live in context variables. `bind_call` is set where a call's task starts
(`CallSession.run`) and `bind_turn` where a turn's task starts, so every task the call
or turn creates inherits them and every log line written from inside carries them;
lines outside any call carry none. `log_format: json` (config) writes one JSON object
per line for a log shipper: `ts` (ISO 8601 UTC), `level`, `logger`, `msg`, `pid`,
`call_id`, `turn_id`, and `exc` when there is a traceback. `text` keeps the classic
format with `[call/turn]` after the level. Messages are never re-parsed: phone masking
happens where they are written (`voicebot.redact`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime

CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)
TURN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("turn_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s%(ids)s %(name)s: %(message)s"


def bind_call(call_id: str | None) -> None:
    """Mark the current task (and tasks it creates from now on) as call `call_id`."""
    CALL_ID.set(call_id)
    TURN_ID.set(None)


def bind_turn(turn_id: str | None) -> None:
    """Mark the current task (and its children) as turn `turn_id` of the bound call."""
    TURN_ID.set(turn_id)


class ContextFilter(logging.Filter):
    """Adds `call_id`, `turn_id` and a ready-made `ids` suffix to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the ids; never drops a record."""
        call, turn = CALL_ID.get(), TURN_ID.get()
        record.call_id = call
        record.turn_id = turn
        record.ids = f" [{call}/{turn}]" if call and turn else f" [{call}]" if call else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single JSON line."""
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
            "call_id": getattr(record, "call_id", None),
            "turn_id": getattr(record, "turn_id", None),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(fmt: str = "text", level: str | int = "INFO") -> None:
    """Route the root logger to stderr in `fmt` ("text" or "json"); idempotent."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format must be text or json, not {fmt!r}")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
