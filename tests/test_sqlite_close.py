"""Closing the SQLite store while an operation runs on another thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from booking.store.sqlite import SqliteStore


async def test_close_waits_for_the_operation_in_flight(tmp_path: Path) -> None:
    """A purge or a booking still running when the server shuts the store: it finishes on
    an open connection (closing under it crashed the process in CI), then the store
    closes."""
    store = SqliteStore(tmp_path / "bookings.sqlite3")
    await store.open()
    started = threading.Event()

    def slow(conn: sqlite3.Connection) -> tuple[int]:
        started.set()
        time.sleep(0.3)
        return conn.execute("SELECT 1").fetchone()

    op = asyncio.get_running_loop().create_task(store._run(slow))
    await asyncio.to_thread(started.wait)
    await store.close()
    assert await op == (1,)
    assert store._conn is None and store._reader is None
