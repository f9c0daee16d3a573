"""SQLite backend: the embedded default.

Double booking is prevented by doing the overlap check and the insert inside one
`BEGIN IMMEDIATE` transaction: SQLite admits one writer at a time across all processes,
so the check cannot race. Blocking calls run in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from booking.models import Booking, CallRecord, NewBooking, SlotTaken, StoreError, new_booking_id
from booking.notify.message import Notification
from booking.privacy.act import PurgeReport
from booking.store import sql, sqlite_privacy
from booking.store.sqlite_outbox import SCHEMA as OUTBOX_SCHEMA
from booking.store.sqlite_outbox import SqliteOutbox, insert_rows

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id TEXT PRIMARY KEY,
    call_id TEXT,
    service TEXT NOT NULL,
    master TEXT NOT NULL,
    start_at TEXT NOT NULL,
    end_at TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    CHECK (end_ts > start_ts)
);
CREATE UNIQUE INDEX IF NOT EXISTS bookings_call_active
    ON bookings(call_id) WHERE status = 'active' AND call_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS bookings_master_time ON bookings(master, start_ts, end_ts);
CREATE INDEX IF NOT EXISTS bookings_phone ON bookings(phone);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    transcript TEXT NOT NULL,
    extracted TEXT NOT NULL,
    summary TEXT NOT NULL,
    booking_id TEXT,
    stats TEXT NOT NULL DEFAULT '{}',
    started_ts INTEGER
);
"""

_COLS = "id, call_id, service, master, start_at, end_at, name, phone, status, created_at, seq"
# Columns added after the first release: (table, column, DDL), applied at open.
_MIGRATIONS = (
    ("bookings", "seq", "ALTER TABLE bookings ADD COLUMN seq INTEGER NOT NULL DEFAULT 0"),
    ("calls", "started_ts", "ALTER TABLE calls ADD COLUMN started_ts INTEGER"),
)
_CALL_COLS = sql.CALL_COLUMNS


def _call(row: Sequence[Any]) -> CallRecord:
    return sql.call_record(row, when=datetime.fromisoformat, doc=json.loads)


def _row_to_booking(row: Sequence[Any]) -> Booking:
    return Booking(
        id=row[0],
        call_id=row[1],
        service=row[2],
        master=row[3],
        start=datetime.fromisoformat(row[4]),
        end=datetime.fromisoformat(row[5]),
        name=row[6],
        phone=row[7],
        status=row[8],
        created_at=datetime.fromisoformat(row[9]),
        seq=int(row[10]),
    )


class SqliteStore(sql.SharedBookingReads):
    """Bookings, call records and the outbox in one SQLite file (WAL, a reader connection)."""

    dialect = sql.SQLITE
    booking_columns = _COLS

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # Reads get a connection of their own: under WAL they run while a write waits
        # for its fsync, so 200 calls confirming at once do not queue every
        # availability check behind the commits. (":memory:" has one connection.)
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.outbox = SqliteOutbox(self._run, self._read)

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """A store for `sqlite:///relative`, `sqlite:////absolute` or `sqlite:///:memory:`."""
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        rest = url.split(":", 1)[1]
        if rest.startswith("///"):
            rest = rest[3:]
        elif rest.startswith("//"):
            rest = rest[2:]
        if not rest:
            raise ValueError("sqlite URL needs a path, e.g. sqlite:///data/voicebot.sqlite3")
        return cls(rest)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._conn is None:
                    raise StoreError("store is not open")
                return fn(self._conn)

        return await asyncio.to_thread(call)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            return await self._run(fn)

        def call() -> T:
            with self._read_lock:
                if self._reader is None:
                    raise StoreError("store is not open")
                return fn(self._reader)

        return await asyncio.to_thread(call)

    async def open(self) -> None:
        """Open the file (WAL, full sync, secure delete), create and migrate the schema,
        open the reader."""

        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            # Deleted personal data is overwritten, not left in free pages (152-FZ
            # deletion must really delete; `voicebot privacy forget` relies on it).
            conn.execute("PRAGMA secure_delete = ON")
            conn.executescript(SCHEMA)
            conn.executescript(OUTBOX_SCHEMA)
            for table, column, ddl in _MIGRATIONS:
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(ddl)
            conn.execute(
                "UPDATE calls SET started_ts = unixepoch(started_at) WHERE started_ts IS NULL"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS calls_started ON calls(started_ts)")
            return conn

        if self._conn is None:
            self._conn = await asyncio.to_thread(connect)
        if self._reader is None and self.path != ":memory:":
            self._reader = await asyncio.to_thread(self._connect_reader)

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA query_only = ON")
        return conn

    async def close(self) -> None:
        """Close both connections, each once the operation using it (if any) is done.

        Under the locks: closing a connection while another thread runs a statement on it
        frees SQLite's memory under that statement (a segfault in CI: a retention purge
        still running when a test closed the store)."""

        def shut() -> None:
            with self._read_lock:
                reader, self._reader = self._reader, None
            with self._lock:
                conn, self._conn = self._conn, None
            for c in (reader, conn):
                if c is not None:
                    c.close()

        await asyncio.to_thread(shut)

    async def create(self, booking: NewBooking, *, notify: Sequence[Notification] = ()) -> Booking:
        """Book under `BEGIN IMMEDIATE` (the overlap check cannot race) with its
        notification rows; SlotTaken on a clash; idempotent per call."""

        def tx(conn: sqlite3.Connection) -> Booking:
            start_ts, end_ts = int(booking.start.timestamp()), int(booking.end.timestamp())
            conn.execute("BEGIN IMMEDIATE")
            try:
                if booking.call_id is not None:
                    row = conn.execute(
                        f"SELECT {_COLS} FROM bookings WHERE call_id = ? AND status = 'active'",
                        (booking.call_id,),
                    ).fetchone()
                    if row is not None:
                        conn.execute("COMMIT")
                        return _row_to_booking(row)
                clash = conn.execute(
                    "SELECT id FROM bookings WHERE master = ? AND status = 'active'"
                    " AND start_ts < ? AND end_ts > ? LIMIT 1",
                    (booking.master, end_ts, start_ts),
                ).fetchone()
                if clash is not None:
                    raise SlotTaken(f"{booking.master} is busy at {booking.start.isoformat()}")
                created = datetime.now(booking.start.tzinfo).replace(microsecond=0)
                for _ in range(10):
                    bid = new_booking_id()
                    if not conn.execute("SELECT 1 FROM bookings WHERE id = ?", (bid,)).fetchone():
                        break
                conn.execute(
                    f"INSERT INTO bookings ({_COLS}, start_ts, end_ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, 0, ?, ?)",
                    (
                        bid,
                        booking.call_id,
                        booking.service,
                        booking.master,
                        booking.start.isoformat(),
                        booking.end.isoformat(),
                        booking.name,
                        booking.phone,
                        created.isoformat(),
                        start_ts,
                        end_ts,
                    ),
                )
                insert_rows(conn, notify, bid, datetime.now(UTC))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return Booking(
                id=bid,
                call_id=booking.call_id,
                service=booking.service,
                master=booking.master,
                start=booking.start,
                end=booking.end,
                name=booking.name,
                phone=booking.phone,
                status="active",
                created_at=created,
            )

        return await self._run(tx)

    async def _bookings(self, query: sql.Query) -> list[Booking]:
        text, params = query
        return await self._read(
            lambda c: [_row_to_booking(r) for r in c.execute(text, params).fetchall()]
        )

    async def cancel(
        self, booking_id: str, *, notify: Sequence[Notification] = ()
    ) -> Booking | None:
        """Cancel an active booking (its change counter bumped) with its notification rows;
        None when there is none."""

        def tx(c: sqlite3.Connection) -> Booking | None:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    f"SELECT {_COLS} FROM bookings WHERE id = ? AND status = 'active'",
                    (booking_id,),
                ).fetchone()
                if row is None:
                    c.execute("COMMIT")
                    return None
                c.execute(
                    "UPDATE bookings SET status = 'cancelled', seq = seq + 1 WHERE id = ?",
                    (booking_id,),
                )
                insert_rows(c, notify, booking_id, datetime.now(UTC))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            b = _row_to_booking(row)
            return Booking(**{**_asdict(b), "status": "cancelled", "seq": b.seq + 1})

        return await self._run(tx)

    async def save_call(self, record: CallRecord) -> None:
        """Store (or replace) one call's record."""
        values = [*sql.call_record_values(record, when=datetime.isoformat)]
        values.append(int(record.started_at.timestamp()))

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT OR REPLACE INTO calls ({_CALL_COLS}, started_ts)"
                f" VALUES ({', '.join(['?'] * 11)})",
                values,
            )

        await self._run(tx)

    async def get_call(self, call_id: str) -> CallRecord | None:
        """One call's record, or None."""

        def q(c: sqlite3.Connection) -> CallRecord | None:
            row = c.execute(
                f"SELECT {_CALL_COLS} FROM calls WHERE call_id = ?", (call_id,)
            ).fetchone()
            return _call(row) if row is not None else None

        return await self._read(q)

    async def list_calls(
        self, start: datetime, end: datetime, *, brief: bool = False
    ) -> Sequence[CallRecord]:
        """Calls that started in [start, end), newest first; `brief`: without transcript
        and turn log (lists and numbers need neither, and they are most of the bytes)."""
        text, params = sql.calls_between(sql.SQLITE, _CALL_COLS, start, end, brief=brief)
        return await self._read(lambda c: [_call(r) for r in c.execute(text, params).fetchall()])

    async def purge(self, *, calls_before: datetime, visits_before: datetime) -> PurgeReport:
        """Retention: delete call records older than `calls_before`, anonymize bookings
        whose visit ended before `visits_before` (see booking/store/sqlite_privacy.py)."""
        return await self._run(
            lambda c: sqlite_privacy.purge(
                c, calls_before=calls_before, visits_before=visits_before
            )
        )

    async def forget_phone(self, phone: str) -> PurgeReport:
        """Remove every record of one person (152-FZ art. 21); see sqlite_privacy."""
        return await self._run(lambda c: sqlite_privacy.forget_phone(c, phone))


def _asdict(b: Booking) -> dict[str, Any]:
    return {f: getattr(b, f) for f in Booking.__slots__}
