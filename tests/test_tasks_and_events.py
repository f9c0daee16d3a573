"""`cancel_and_wait` and `EventLog.emit`: cleanup that never hides what went wrong."""

from __future__ import annotations

import asyncio
import logging

import pytest

from voicebot.engine.events import EventLog
from voicebot.tasks import cancel_and_wait


async def test_cancel_and_wait_cancels_and_waits() -> None:
    cleaned = asyncio.Event()

    async def worker() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task) is None
    assert task.cancelled() and cleaned.is_set()
    assert await cancel_and_wait(None) is None


async def test_cancel_and_wait_returns_the_tasks_own_failure() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    err = await cancel_and_wait(task)
    assert isinstance(err, ValueError)


async def test_cancel_and_wait_does_not_swallow_the_callers_cancellation() -> None:
    """The caller is cancelled while it waits for a slow-to-stop task: the caller must
    stop too (`with suppress(CancelledError): await task` would carry on)."""
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # takes its time to wind down
            raise

    after_cleanup = []

    async def owner(task: asyncio.Task[None]) -> None:
        await cancel_and_wait(task)
        after_cleanup.append("ran on")  # must not run: the owner was cancelled

    inner = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    outer = asyncio.create_task(owner(inner))
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert after_cleanup == []
    release.set()
    await asyncio.wait((inner,))
    assert inner.cancelled()


async def test_event_log_logs_an_undelivered_event(caplog: pytest.LogCaptureFixture) -> None:
    async def dead_socket(event: dict[str, object]) -> None:
        raise ConnectionResetError("peer gone")

    events = EventLog("call-1", dead_socket)
    with caplog.at_level(logging.DEBUG, logger="voicebot.engine.events"):
        first = await events.emit("transcript", text="да")
        await events.emit("turn")
    assert first["seq"] == 1 and events.dropped == 2  # the call goes on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionResetError" in warnings[0].getMessage()
    assert "call-1" in warnings[0].getMessage()
