"""The audit trail of a booking call: per turn, what was heard and understood, which
state-machine transitions it caused, which backend calls it made (and how they ended),
and what the bot answered.

Stored with the call record (`extracted.audit`), never in the logs, so it is kept and
deleted exactly like the call record and its transcript (privacy retention). Backend
calls are seen through `AuditedBackend`, a transparent proxy: the dialogue's backend
(local store or YCLIENTS) is unchanged. Only calls made by the task running a real turn
are recorded (a context variable set between `mark` and `record`): a speculative
reply computed in another task (booking.speculative) leaves no trace.
"""

from __future__ import annotations

import contextvars
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from voicebot.clock import Clock
from voicebot.dialogue import DialogueAction, ReplyPart

_RECORDING: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "booking_audit_calls", default=None
)


class AuditedBackend:
    """Wraps a booking backend; each awaited method call made inside a real turn is
    appended to that turn's list as `{"call", "ms", "ok"}` or `{"call", "ms",
    "error"}` (the exception's type only)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)  # copy/pickle probes must not recurse
        attr = getattr(self._inner, name)
        calls = _RECORDING.get()
        if calls is None or not inspect.iscoroutinefunction(attr):
            return attr

        async def audited(*args: Any, **kwargs: Any) -> Any:
            t0 = time.monotonic()
            entry: dict[str, Any] = {"call": name}
            try:
                result = await attr(*args, **kwargs)
            except BaseException as exc:
                entry["error"] = type(exc).__name__
                raise
            else:
                entry["ok"] = True
                return result
            finally:
                entry["ms"] = round((time.monotonic() - t0) * 1000, 1)
                calls.append(entry)

        return audited


@dataclass(frozen=True, slots=True)
class Mark:
    """Where the logs stood when a turn began."""

    history: int
    understood: int
    calls: int


class TurnAudit:
    """Collects one entry per dialogue turn (see the module docstring) from the
    machine's transition `history()` and the dialogue's `understood` log."""

    def __init__(
        self,
        clock: Clock,
        history: Callable[[], Sequence[tuple[str, str, str]]],
        understood: Sequence[dict[str, Any]],
    ) -> None:
        self.clock = clock
        self._history = history
        self._understood = understood
        self.entries: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def mark(self) -> Mark:
        """Call before the machine handles a turn (in the task that runs it)."""
        _RECORDING.set(self.calls)
        return Mark(len(self._history()), len(self._understood), len(self.calls))

    def record(
        self, trigger: str, heard: str | None, mark: Mark, parts: Sequence[ReplyPart]
    ) -> None:
        """Call after the machine handled the turn with the parts it answered."""
        _RECORDING.set(None)
        history, understood = self._history(), self._understood
        self.entries.append(
            {
                "at": self.clock.now().isoformat(timespec="seconds"),
                "trigger": trigger,
                "heard": heard,
                "understood": [u.get("extracted") for u in understood[mark.understood :]],
                "transitions": [list(t) for t in history[mark.history :]],
                "backend": self.calls[mark.calls :],
                "said": " ".join(p for p in parts if isinstance(p, str)),
                "actions": [p.kind for p in parts if isinstance(p, DialogueAction)],
            }
        )
