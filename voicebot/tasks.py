"""Task helpers shared by every layer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> BaseException | None:
    """Cancel `task` and wait until it has finished; return its exception, if any.

    The task's own `CancelledError` is absorbed, but the caller's is not: if the task
    running this helper is cancelled while it waits, `CancelledError` propagates as
    it must (a bare `with suppress(CancelledError): await task` would swallow it and
    leave the caller running after it was told to stop). An exception the task
    ended with is returned rather than raised, so cleanup paths go on; the caller
    logs or re-raises it as it sees fit.
    """
    if task is None:
        return None
    if not task.done():
        task.cancel()
        # `wait` never raises the task's outcome; only our own cancellation gets out.
        await asyncio.wait((task,))
    if task.cancelled():
        return None
    return task.exception()


async def cancel_all(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """`cancel_and_wait` for several tasks at once (their exceptions are dropped)."""
    pending = [t for t in tasks if t is not None]
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending)
    for t in pending:
        if not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" warning
