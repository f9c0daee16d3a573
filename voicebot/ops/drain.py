"""Graceful drain on SIGTERM: stop taking calls, let live ones finish, then end them.

The order matters:
1. readiness goes down at once (`/readyz` 503, every transport's capacity check
   refuses new calls: browser 1013, Voximplant 503, AudioSocket hang-up);
2. live calls may finish on their own for up to `server.drain_timeout_s`;
3. each call still up hears `server.goodbye_message` (a last turn, then the bot
   hangs up, so the call ends through its normal path: summary, stored record);
4. whatever has not ended `GOODBYE_MAX_S` later is ended (`server_shutdown`).

SIGINT (Ctrl-C, a person at the demo) skips 2 and 3: live calls end at once.

All of this happens before the HTTP runner's cleanup, so no WebSocket is left for
aiohttp to close with its 10 s close timeout. A booking confirmed to a caller is
already committed (the store commits before the bot says «записала»), and a commit
cut by the goodbye turn still completes: the booking dialogue shields it.
Waits go through the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Protocol

from voicebot.clock import Clock
from voicebot.ops.health import Readiness

log = logging.getLogger(__name__)

GOODBYE_MAX_S = 8.0  # the goodbye sentence plays out in this time, or the call is cut
POLL_S = 0.1


class DrainableCall(Protocol):
    """What the drain needs of a live call (`CallSession` implements it)."""

    @property
    def ended(self) -> str | None:
        """Why the call ended, or None while it runs."""
        ...

    def say_goodbye(self, text: str, reason: str) -> None:
        """Say `text` as the last turn, then hang up with `reason`."""
        ...

    def end(self, reason: str = "caller_hangup") -> None:
        """End the call now."""
        ...


async def _wait_until_none(
    live: Callable[[], Collection[DrainableCall]], clock: Clock, seconds: float
) -> int:
    """Wait until no call is live or `seconds` passed; how many are still live."""
    end = clock.monotonic() + seconds
    while live() and clock.monotonic() < end:
        await clock.sleep(min(POLL_S, max(0.0, end - clock.monotonic())))
    return len(live())


async def drain(
    readiness: Readiness,
    live: Callable[[], Collection[DrainableCall]],
    clock: Clock,
    *,
    timeout_s: float,
    goodbye: str | None,
) -> dict[str, int]:
    """Run the drain; returns counts (`finished`, `said_goodbye`, `cut`) for the log.

    `goodbye` None skips the goodbye turn: calls still up after `timeout_s` are ended
    at once (`server_shutdown`), as on Ctrl-C.
    """
    readiness.start_draining()
    first = len(live())
    log.info("draining: %d live call(s), up to %g s", first, timeout_s)
    left = await _wait_until_none(live, clock, timeout_s)
    said = 0
    if left and goodbye is not None:
        log.info("drain timeout: saying goodbye to %d call(s)", left)
        for call in list(live()):
            if call.ended is None:
                call.say_goodbye(goodbye, "server_shutdown")
                said += 1
        left = await _wait_until_none(live, clock, GOODBYE_MAX_S)
    cut = left
    if left:
        log.warning("ending %d call(s) that did not finish their goodbye", left)
        for call in list(live()):
            call.end("server_shutdown")
        await _wait_until_none(live, clock, 2.0)
    finished = first - said - (cut if goodbye is None else 0)
    return {"finished": finished, "said_goodbye": said, "cut": cut}
