"""The outbox interface both stores implement (`store.outbox`).

Delivery is at-least-once per claim and exactly-once per row as far as this side can
make it: a row is claimed under a lease, delivered, then marked sent by the lease holder
only; a row marked sent is never claimed again, across restarts and processes. The one
window left is a crash after the remote accepted a message and before `mark_sent`
committed: the row is retried when its lease passes (the webhook carries an
`Idempotency-Key` so a receiver can drop the repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from booking.notify.message import Notification, OutboxRow, OutboxStats


class Outbox(Protocol):
    """Durable notification queue (SQLite: `sqlite_outbox`; PostgreSQL: `pg_outbox`)."""

    async def enqueue(
        self, rows: Sequence[Notification], booking_id: str | None, now: datetime
    ) -> int:
        """Insert rows (existing keys skipped) in their own transaction; returns new rows."""
        ...

    async def claim(
        self, owner: str, *, now: datetime, lease_s: float, limit: int = 10
    ) -> list[OutboxRow]:
        """Lease due rows to `owner` for `lease_s` seconds; attempts are counted here."""
        ...

    async def mark_sent(self, row_id: int, owner: str, now: datetime) -> bool:
        """Final success; False when `owner` no longer holds the row."""
        ...

    async def mark_retry(self, row_id: int, owner: str, *, at: datetime, error: str) -> bool:
        """Release the row, due again at `at`."""
        ...

    async def mark_failed(
        self, row_id: int, owner: str, *, error: str, status: str = "failed"
    ) -> bool:
        """Final failure (`failed`) or a deliberate skip (`skipped`)."""
        ...

    async def list(self, *, status: str | None = None, limit: int = 200) -> list[OutboxRow]:
        """Newest rows first, optionally of one status."""
        ...

    async def stats(self, now: datetime) -> OutboxStats:
        """Queue depth and failure counts."""
        ...
