"""PostgreSQL backend (psycopg 3, async) for several server processes.

The database itself refuses double bookings: an exclusion constraint over
(master, tstzrange(start_at, end_at)) among active rows, so concurrent inserts from any
number of processes cannot both succeed. Idempotency per call is a partial unique index.

Two inserts that overlap can each find the other's uncommitted row while checking the
exclusion constraint and wait on each other: PostgreSQL breaks that with a deadlock error
("while checking exclusion constraint"), which for a caller would be a failed booking
instead of "that time is taken". So an insert first takes a transaction advisory lock on
its master: bookings for one master are checked one at a time (the second then sees the
first's committed row and gets the exclusion violation), bookings for different masters
still go in parallel. A deadlock or serialization failure that still happens (another
writer not taking the lock) is retried a few times, since the transaction rolled back whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from booking.models import Booking, CallRecord, NewBooking, SlotTaken, StoreError, new_booking_id
from booking.notify.message import Notification
from booking.privacy.act import PurgeReport
from booking.store import postgres_privacy, sql
from booking.store.pg_outbox import SCHEMA as OUTBOX_SCHEMA
from booking.store.pg_outbox import PgOutbox, insert_rows

# pg_advisory_xact_lock(key1, key2) namespace for "inserting a booking for this master";
# 74201 (the one-key form) serializes schema creation.
_MASTER_LOCK_NS = 74202
# A rolled-back insert retried this many times after a deadlock/serialization failure.
_TXN_RETRIES = 3

SCHEMA = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    """CREATE TABLE IF NOT EXISTS bookings (
        id TEXT PRIMARY KEY,
        call_id TEXT,
        service TEXT NOT NULL,
        master TEXT NOT NULL,
        start_at TIMESTAMPTZ NOT NULL,
        end_at TIMESTAMPTZ NOT NULL,
        tz TEXT NOT NULL,
        name TEXT NOT NULL,
        phone TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        seq INTEGER NOT NULL DEFAULT 0,
        CHECK (end_at > start_at),
        CONSTRAINT bookings_no_overlap EXCLUDE USING gist
            (master WITH =, tstzrange(start_at, end_at) WITH &&) WHERE (status = 'active')
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS bookings_call_active
        ON bookings(call_id) WHERE status = 'active' AND call_id IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS bookings_phone ON bookings(phone)",
    """CREATE TABLE IF NOT EXISTS calls (
        call_id TEXT PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        ended_at TIMESTAMPTZ NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        transcript JSONB NOT NULL,
        extracted JSONB NOT NULL,
        summary TEXT NOT NULL,
        booking_id TEXT,
        stats JSONB NOT NULL DEFAULT '{}'
    )""",
    # Added after the first release (change counter for the calendar feed's SEQUENCE).
    "ALTER TABLE bookings ADD COLUMN IF NOT EXISTS seq INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at)",
]

_COLS = "id, call_id, service, master, start_at, end_at, tz, name, phone, status, created_at, seq"
_CALL_COLS = sql.CALL_COLUMNS


def _tz_name(dt: datetime) -> str:
    key = getattr(dt.tzinfo, "key", None)
    return key or "UTC"


def _row_to_booking(row: Sequence[Any]) -> Booking:
    tz = ZoneInfo(row[6])
    return Booking(
        id=row[0],
        call_id=row[1],
        service=row[2],
        master=row[3],
        start=row[4].astimezone(tz),
        end=row[5].astimezone(tz),
        name=row[7],
        phone=row[8],
        status=row[9],
        created_at=row[10].astimezone(tz),
        seq=int(row[11]),
    )


class PostgresStore(sql.SharedBookingReads):
    """Bookings, call records and the outbox in PostgreSQL (a pool of `max_size`)."""

    dialect = sql.POSTGRES
    booking_columns = _COLS

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.url = url
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self.outbox = PgOutbox(lambda: self.pool)

    @property
    def pool(self) -> AsyncConnectionPool:
        """The open pool (StoreError when the store is not open)."""
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Open the pool and create the schema (serialized across processes by an advisory
        lock)."""
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.url, min_size=1, max_size=self._max_size, open=False, kwargs={"autocommit": True}
        )
        await pool.open(wait=True, timeout=15)
        async with pool.connection() as conn:
            # Serialize schema creation across processes starting at once.
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(74201)")
                for stmt in [*SCHEMA, *OUTBOX_SCHEMA]:
                    await conn.execute(stmt)
        self._pool = pool

    async def close(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _by_call(self, conn: psycopg.AsyncConnection, call_id: str) -> Booking | None:
        cur = await conn.execute(
            f"SELECT {_COLS} FROM bookings WHERE call_id = %s AND status = 'active'", (call_id,)
        )
        row = await cur.fetchone()
        return _row_to_booking(row) if row else None

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """Book, with its notification rows, in one transaction; SlotTaken when the
        exclusion constraint refuses it; idempotent per call."""
        async with self.pool.connection() as conn:
            if booking.call_id is not None:
                existing = await self._by_call(conn, booking.call_id)
                if existing is not None:
                    return existing
            retries = 0
            for _ in range(10 + _TXN_RETRIES):
                bid = new_booking_id()
                try:
                    # The booking and its notification rows commit together or not at all.
                    async with conn.transaction():
                        await conn.execute(
                            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                            (_MASTER_LOCK_NS, booking.master),
                        )
                        cur = await conn.execute(
                            "INSERT INTO bookings (id, call_id, service, master, start_at,"
                            " end_at, tz, name, phone) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                            f" RETURNING {_COLS}",
                            (
                                bid,
                                booking.call_id,
                                booking.service,
                                booking.master,
                                booking.start,
                                booking.end,
                                _tz_name(booking.start),
                                booking.name,
                                booking.phone,
                            ),
                        )
                        row = await cur.fetchone()
                        await insert_rows(conn, notify, bid)
                except errors.ExclusionViolation as e:
                    raise SlotTaken(
                        f"{booking.master} is busy at {booking.start.isoformat()}"
                    ) from e
                except errors.UniqueViolation as e:
                    if booking.call_id is not None and "call" in str(e.diag.constraint_name):
                        existing = await self._by_call(conn, booking.call_id)
                        if existing is not None:
                            return existing
                    continue  # id collision: draw another
                except (errors.DeadlockDetected, errors.SerializationFailure) as e:
                    retries += 1
                    if retries > _TXN_RETRIES:
                        raise StoreError(f"booking insert kept failing: {e.sqlstate}") from e
                    continue
                assert row is not None
                return _row_to_booking(row)
            raise StoreError("could not allocate a booking id")

    async def _bookings(self, query: sql.Query) -> list[Booking]:
        text, params = query
        async with self.pool.connection() as conn:
            cur = await conn.execute(text, params)
            return [_row_to_booking(r) for r in await cur.fetchall()]

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """Cancel an active booking (its change counter bumped) with its notification rows;
        None when there is none."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE bookings SET status = 'cancelled', seq = seq + 1"
                " WHERE id = %s AND status = 'active'"
                f" RETURNING {_COLS}",
                (booking_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await insert_rows(conn, notify, booking_id)
        return _row_to_booking(row)

    async def save_call(self, record: CallRecord) -> None:
        """Store (or replace) one call's record."""
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO calls ({_CALL_COLS}) VALUES ({', '.join(['%s'] * 10)})"
                " ON CONFLICT (call_id) DO UPDATE SET ended_at = EXCLUDED.ended_at,"
                " outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,"
                " transcript = EXCLUDED.transcript, extracted = EXCLUDED.extracted,"
                " summary = EXCLUDED.summary, booking_id = EXCLUDED.booking_id,"
                " stats = EXCLUDED.stats",
                sql.call_record_values(record),
            )

    async def get_call(self, call_id: str) -> CallRecord | None:
        """One call's record, or None."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CALL_COLS} FROM calls WHERE call_id = %s", (call_id,)
            )
            row = await cur.fetchone()
        return sql.call_record(row) if row is not None else None

    async def list_calls(
        self, start: datetime, end: datetime, *, brief: bool = False
    ) -> Sequence[CallRecord]:
        """Calls that started in [start, end), newest first; `brief`: without transcript
        and turn log."""
        query, params = sql.calls_between(sql.POSTGRES, _CALL_COLS, start, end, brief=brief)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [sql.call_record(r) for r in await cur.fetchall()]

    async def purge(self, *, calls_before: datetime, visits_before: datetime) -> PurgeReport:
        """Retention (see booking/store/postgres_privacy.py)."""
        async with self.pool.connection() as conn:
            return await postgres_privacy.purge(
                conn, calls_before=calls_before, visits_before=visits_before
            )

    async def forget_phone(self, phone: str) -> PurgeReport:
        """Remove every record of one person (see booking/store/postgres_privacy.py)."""
        async with self.pool.connection() as conn:
            return await postgres_privacy.forget_phone(conn, phone)
