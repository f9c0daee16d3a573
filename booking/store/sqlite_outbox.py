"""The notification outbox in SQLite: rows written inside the booking's transaction, and
the claim/lease protocol that lets several sender processes share one file.

A sender claims due rows under `BEGIN IMMEDIATE` (SQLite's single writer makes the claim
atomic across processes) by writing its id and a lease deadline; the row is invisible to
other senders until the lease passes. Marking sent/retry/failed only succeeds for the
lease holder, so a sender that lost its lease (it stalled past the deadline) cannot
overwrite the outcome of the one that took over. Times are epoch milliseconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from booking.notify.message import Notification, OutboxRow, OutboxStats
from booking.store import sql

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL,
    booking_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_attempt_ms);
"""

_COLS = (
    "id, key, kind, channel, recipient, data, booking_id, status, attempts, next_attempt_ms,"
    " created_ms, sent_ms, last_error, lease_owner"
)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _row(r: Sequence[Any]) -> OutboxRow:
    return sql.outbox_row(r, when=_dt, doc=json.loads)


def insert_rows(
    conn: sqlite3.Connection,
    rows: Sequence[Notification],
    booking_id: str | None,
    now: datetime,
) -> int:
    """INSERT inside the caller's open transaction; a key already there is skipped.
    Returns how many rows were new."""
    n = 0
    for note in rows:
        cur = conn.execute(
            "INSERT OR IGNORE INTO outbox (key, kind, channel, recipient, data, booking_id,"
            " next_attempt_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            sql.outbox_values(note, booking_id, _ms(now)),
        )
        n += cur.rowcount
    return n


Runner = Callable[[Callable[[sqlite3.Connection], Any]], Any]


class SqliteOutbox(sql.SharedOutboxWrites):
    """`booking.notify.outbox.Outbox` on the store's SQLite file."""

    dialect = sql.SQLITE
    outbox_columns = _COLS

    def __init__(self, run: Runner, read: Runner) -> None:
        self._run = run
        self._read = read

    async def enqueue(
        self, rows: Sequence[Notification], booking_id: str | None, now: datetime
    ) -> int:
        """Insert rows in their own transaction (YCLIENTS: after the API confirmed)."""

        def tx(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                n = insert_rows(c, rows, booking_id, now)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return n

        return int(await self._run(tx))

    async def claim(
        self, owner: str, *, now: datetime, lease_s: float, limit: int = 10
    ) -> list[OutboxRow]:
        """Lease up to `limit` due rows to `owner` until now + lease_s (attempts + 1)."""
        now_ms, until = _ms(now), _ms(now) + int(lease_s * 1000)

        def any_due(c: sqlite3.Connection) -> bool:
            return (
                c.execute(
                    "SELECT 1 FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?"
                    " AND (lease_until_ms IS NULL OR lease_until_ms <= ?) LIMIT 1",
                    (now_ms, now_ms),
                ).fetchone()
                is not None
            )

        # An idle poll reads on the reader connection: it never takes the write lock
        # that a caller's booking commit may be waiting for.
        if not await self._read(any_due):
            return []

        def tx(c: sqlite3.Connection) -> list[OutboxRow]:
            c.execute("BEGIN IMMEDIATE")
            try:
                ids = [
                    r[0]
                    for r in c.execute(
                        "SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?"
                        " AND (lease_until_ms IS NULL OR lease_until_ms <= ?)"
                        " ORDER BY id LIMIT ?",
                        (now_ms, now_ms, limit),
                    ).fetchall()
                ]
                out: list[OutboxRow] = []
                for rid in ids:
                    c.execute(
                        "UPDATE outbox SET lease_owner = ?, lease_until_ms = ?,"
                        " attempts = attempts + 1 WHERE id = ?",
                        (owner, until, rid),
                    )
                    r = c.execute(f"SELECT {_COLS} FROM outbox WHERE id = ?", (rid,)).fetchone()
                    out.append(_row(r))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return out

        return list(await self._run(tx))

    async def _finish(self, text: str, params: Sequence[Any]) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            return c.execute(text, params).rowcount == 1

        return bool(await self._run(tx))

    async def mark_sent(self, row_id: int, owner: str, now: datetime) -> bool:
        """Delivered: never claimed again. False when `owner` no longer holds the lease."""
        return await self._finish(
            "UPDATE outbox SET status = 'sent', sent_ms = ?, lease_owner = NULL,"
            " lease_until_ms = NULL, last_error = '' WHERE id = ? AND lease_owner = ?"
            " AND status = 'pending'",
            (_ms(now), row_id, owner),
        )

    async def _rows(self, query: sql.Query) -> list[OutboxRow]:
        text, params = query
        return list(await self._read(lambda c: [_row(r) for r in c.execute(text, params)]))

    async def stats(self, now: datetime) -> OutboxStats:
        """Counts by status and the oldest pending row's age."""

        def q(c: sqlite3.Connection) -> OutboxStats:
            counts = dict(c.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
            oldest = c.execute(
                "SELECT MIN(created_ms) FROM outbox WHERE status = 'pending'"
            ).fetchone()[0]
            due = c.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?"
                " AND (lease_until_ms IS NULL OR lease_until_ms <= ?)",
                (_ms(now), _ms(now)),
            ).fetchone()[0]
            failed = dict(
                c.execute(
                    "SELECT channel, COUNT(*) FROM outbox WHERE status = 'failed' GROUP BY channel"
                )
            )
            return OutboxStats(
                pending=counts.get("pending", 0),
                due=due,
                sent=counts.get("sent", 0),
                failed=counts.get("failed", 0),
                skipped=counts.get("skipped", 0),
                oldest_pending_s=max(0.0, (_ms(now) - oldest) / 1000) if oldest else 0.0,
                by_channel_failed=failed,
            )

        return await self._read(q)
