"""The call lifecycle shared by both telephony bridges (Voximplant, AudioSocket).

A telephony connection opens one call on the host once its peer says who is calling,
runs the session in its own task, and when either side goes away ends the session
(bounded wait), stops the paced output, releases the call slot and closes the
socket, exactly once. What differs per bridge (the wire codec, how the socket is
closed, what the far end is told when the session ends) is left to the subclass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicebot.transports.base import CallTransport, end_session
from voicebot.transports.host import CallHost, LiveCall

log = logging.getLogger(__name__)

HANGUP_DRAIN_CAP_S = 10.0  # the goodbye is played out, but never for longer than this


class ClosableTransport(CallTransport, Protocol):
    """A telephony transport: a `CallTransport` whose output can be stopped."""

    async def aclose(self) -> None:
        """Stop sending; the connection itself belongs to the call."""
        ...


@dataclass
class CallStats:
    """What tests and logs want to know about a finished telephony call."""

    summary: Mapping[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


class TelephonyCall:
    """One telephony connection's call, from `open_session` to `finish`.

    Subclasses set `channel`, call `open_session` once the peer has identified the
    call, and implement `session_over` (the session ended by itself: tell the far
    end) and `close_connection` (close the socket; idempotent).
    """

    channel = "telephony"

    def __init__(self, host: CallHost, stats: CallStats) -> None:
        self.host = host
        self.stats = stats
        self.transport: ClosableTransport | None = None
        self.session: LiveCall | None = None
        self._run_task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()  # set once every task of this call is gone

    @property
    def label(self) -> str:
        """`<channel> <call id>` for logs."""
        return self.channel

    def open_session(
        self,
        transport: ClosableTransport,
        *,
        caller_id: str | None,
        called_id: str | None,
        metadata: Mapping[str, str],
        script: Sequence[str] | None,
        script_id: str,
    ) -> LiveCall:
        """Open the call on the host and start running it."""
        self.transport = transport
        self.session = self.host.open_call(
            transport,
            channel=self.channel,
            caller_id=caller_id,
            called_id=called_id,
            metadata=metadata,
            script=script,
            script_id=script_id,
        )
        self._run_task = asyncio.create_task(self._run_session(), name=f"{self.channel}-session")
        return self.session

    async def _run_session(self) -> None:
        assert self.session is not None
        failed = False
        try:
            self.stats.summary = await self.session.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: session failed", self.label)
            failed = True
        await self.session_over(failed)

    async def session_over(self, failed: bool) -> None:
        """The session ended on its own (bot hung up, or it failed): tell the far end."""
        raise NotImplementedError

    async def close_connection(self) -> None:
        """Close the socket (idempotent)."""
        raise NotImplementedError

    async def finish(self) -> None:
        """The socket is gone (either side): end the session, stop the output, release
        the call slot, close the connection. Runs once, from the connection's task."""
        await end_session(self.session, self._run_task, "caller_hangup", self.label)
        if self.transport is not None:
            await self.transport.aclose()
        if self.session is not None:
            self.host.release_call(self.session)
        await self.close_connection()
        self.finished.set()
