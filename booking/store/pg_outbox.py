"""The notification outbox in PostgreSQL: rows inserted inside the booking's transaction,
and claims with `FOR UPDATE SKIP LOCKED` so any number of sender processes share the
queue without taking the same row. A lease deadline (`lease_until`) returns a row to the
queue when its sender died mid-delivery; finishing a row requires still holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from booking.notify.message import Notification, OutboxRow, OutboxStats
from booking.store import sql

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS outbox (
        id BIGSERIAL PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL DEFAULT '',
        data JSONB NOT NULL,
        booking_id TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        lease_owner TEXT,
        lease_until TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        sent_at TIMESTAMPTZ,
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_attempt_at)",
]

_COLS = (
    "id, key, kind, channel, recipient, data, booking_id, status, attempts, next_attempt_at,"
    " created_at, sent_at, last_error, lease_owner"
)


def _row(r: Sequence[Any]) -> OutboxRow:
    return sql.outbox_row(r)


async def insert_rows(
    conn: psycopg.AsyncConnection,
    rows: Sequence[Notification],
    booking_id: str | None,
    now: datetime | None = None,
) -> int:
    """INSERT inside the caller's transaction (stamped `now`, default the database's
    clock); an existing key is skipped."""
    n = 0
    for note in rows:
        cur = await conn.execute(
            "INSERT INTO outbox (key, kind, channel, recipient, data, booking_id,"
            " next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, %s,"
            " COALESCE(%s, now()), COALESCE(%s, now())) ON CONFLICT (key) DO NOTHING",
            sql.outbox_values(note, booking_id, now),
        )
        n += cur.rowcount
    return n


class PgOutbox(sql.SharedOutboxWrites):
    """`booking.notify.outbox.Outbox` on the store's PostgreSQL pool."""

    dialect = sql.POSTGRES
    outbox_columns = _COLS

    def __init__(self, pool: Any) -> None:
        self._pool_ref = pool

    @property
    def _pool(self) -> AsyncConnectionPool:
        return self._pool_ref()

    async def enqueue(
        self, rows: Sequence[Notification], booking_id: str | None, now: datetime
    ) -> int:
        """Insert rows in their own transaction (YCLIENTS: after the API confirmed)."""
        async with self._pool.connection() as conn, conn.transaction():
            return await insert_rows(conn, rows, booking_id, now)

    async def claim(
        self, owner: str, *, now: datetime, lease_s: float, limit: int = 10
    ) -> list[OutboxRow]:
        """Lease up to `limit` due rows; rows locked by another claimer are skipped."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE outbox SET lease_owner = %s, lease_until = %s, attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM outbox WHERE status = 'pending'"
                " AND next_attempt_at <= %s AND (lease_until IS NULL OR lease_until <= %s)"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_COLS}",
                (owner, now + timedelta(seconds=lease_s), now, now, limit),
            )
            rows = [_row(r) for r in await cur.fetchall()]
        return sorted(rows, key=lambda r: r.id)

    async def _finish(self, text: str, params: Sequence[Any]) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(text, params)
            return cur.rowcount == 1

    async def mark_sent(self, row_id: int, owner: str, now: datetime) -> bool:
        """Delivered: never claimed again. False when `owner` lost the lease."""
        return await self._finish(
            "UPDATE outbox SET status = 'sent', sent_at = %s, lease_owner = NULL,"
            " lease_until = NULL, last_error = '' WHERE id = %s AND lease_owner = %s"
            " AND status = 'pending'",
            (now, row_id, owner),
        )

    async def _rows(self, query: sql.Query) -> list[OutboxRow]:
        text, params = query
        async with self._pool.connection() as conn:
            cur = await conn.execute(text, params)
            return [_row(r) for r in await cur.fetchall()]

    async def stats(self, now: datetime) -> OutboxStats:
        """Counts by status and the oldest pending row's age."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
            counts = {r[0]: r[1] for r in await cur.fetchall()}
            cur = await conn.execute("SELECT MIN(created_at) FROM outbox WHERE status = 'pending'")
            row = await cur.fetchone()
            oldest = row[0] if row else None
            cur = await conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= %s"
                " AND (lease_until IS NULL OR lease_until <= %s)",
                (now, now),
            )
            due_row = await cur.fetchone()
            cur = await conn.execute(
                "SELECT channel, COUNT(*) FROM outbox WHERE status = 'failed' GROUP BY channel"
            )
            failed = {r[0]: r[1] for r in await cur.fetchall()}
        return OutboxStats(
            pending=counts.get("pending", 0),
            due=due_row[0] if due_row else 0,
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            oldest_pending_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            by_channel_failed=failed,
        )


__all__ = ["SCHEMA", "PgOutbox", "insert_rows"]
