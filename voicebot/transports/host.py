"""The call host: the one seam between transports and the process that runs calls.

Transports (browser, Voximplant, AudioSocket, the simulator) depend on this Protocol
only, never on `voicebot.runtime.Runtime` itself: they open a call when their peer
starts one, feed it caller input, and release it when the socket is gone. `Runtime`
implements it for production; `tests/fake_host.py` implements it for protocol tests.
Renaming a method here is a type error in every transport, not a silent leak of
call slots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from voicebot.clock import Clock
from voicebot.transports.base import CallTransport


class LiveCall(Protocol):
    """What a transport sees of one running call (`CallSession` implements it)."""

    @property
    def session_id(self) -> str:
        """The call's id (12 hex chars in production), used in logs and events."""
        ...

    async def run(self) -> Mapping[str, Any]:
        """Run the call to its end; returns the call summary (the `done` event's)."""
        ...

    def feed_audio(self, pcm: bytes) -> None:
        """Caller audio: LINEAR16 mono little-endian at the transport's `sample_rate`."""
        ...

    def feed_text(self, text: str) -> None:
        """A typed caller utterance (browser demo, tests)."""
        ...

    def feed_dtmf(self, digit: str) -> None:
        """One DTMF digit, `0-9`, `*`, `#` or `A-D`."""
        ...

    def end(self, reason: str = "caller_hangup") -> None:
        """The far end is gone: the call wraps up (summary, stored record) and `run` returns."""
        ...


class CallHost(Protocol):
    """Where transports open and release calls.

    One host per server process. `has_capacity` counts every live call of every
    channel against `server.max_sessions`; `release_call` must be called exactly once
    per opened call, whatever way it ended, or the slot stays taken.
    """

    @property
    def clock(self) -> Clock:
        """The process clock: every transport wait (pacing, drains) goes through it."""
        ...

    def open_call(
        self,
        transport: CallTransport,
        *,
        channel: str,
        caller_id: str | None = None,
        called_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        script: Sequence[str] | None = None,
        script_id: str | None = None,
        session_id: str | None = None,
        mode: str | None = None,
    ) -> LiveCall:
        """Start one call on `transport`.

        `script` is a caller-supplied transcript for the offline emulator (tests,
        bench); the host passes it on only when its emulator hooks are on and
        ignores it otherwise, so a transport just hands over whatever it parsed.
        `script_id` keys the emulator's position in that script (one per call).
        `mode` picks one of the host's dialogues (None: its default; KeyError for one
        it does not offer).
        """
        ...

    def release_call(self, call: LiveCall) -> None:
        """Free the call's slot. Idempotent."""
        ...

    def has_capacity(self, pending: int = 0, channel: str | None = None) -> bool:
        """True while live calls plus `pending` not-yet-started ones are under the limit
        (and, for a `channel`, under its own cap and outside the telephony reserve);
        False while the process drains."""
        ...
