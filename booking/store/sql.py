"""The queries both stores share, spelled for each engine by a `Dialect`.

SQLite and PostgreSQL keep the same tables with two differences that matter to a query:
the parameter placeholder (`?` / `%s`) and how times are stored (SQLite: epoch seconds
or milliseconds in `*_ts`/`*_ms` columns beside ISO text; PostgreSQL: `TIMESTAMPTZ`).
Each builder returns the SQL and its parameters; running them (threads for SQLite, a
pool for PostgreSQL) stays with the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from booking.models import Booking, CallRecord
from booking.notify.message import Notification, row_key
from booking.notify.outbox import OutboxRow


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one engine spells the shared queries."""

    p: str  # the parameter placeholder
    start: str  # a booking's start, comparable and sortable
    end: str  # a booking's end
    call_started: str  # a call record's start
    time: Callable[[datetime], Any]  # a datetime as those columns hold it
    next_attempt: str  # an outbox row's due time
    lease_until: str  # an outbox row's lease deadline
    outbox_time: Callable[[datetime], Any]  # a datetime as the outbox holds it
    empty_docs: str  # an empty transcript and turn log, as literals


SQLITE = Dialect(
    p="?",
    start="start_ts",
    end="end_ts",
    call_started="started_ts",
    time=lambda dt: int(dt.timestamp()),
    next_attempt="next_attempt_ms",
    lease_until="lease_until_ms",
    outbox_time=lambda dt: int(dt.timestamp() * 1000),
    empty_docs="'[]', '{}'",
)
POSTGRES = Dialect(
    p="%s",
    start="start_at",
    end="end_at",
    call_started="started_at",
    time=lambda dt: dt,
    next_attempt="next_attempt_at",
    lease_until="lease_until",
    outbox_time=lambda dt: dt,
    empty_docs="'[]'::jsonb, '{}'::jsonb",
)

Query = tuple[str, list[Any]]

CALL_COLUMNS = (
    "call_id, started_at, ended_at, outcome, reason, transcript, extracted,"
    " summary, booking_id, stats"
)


def _same(value: Any) -> Any:
    return value


def call_record(
    row: Sequence[Any],
    *,
    when: Callable[[Any], datetime] = _same,
    doc: Callable[[Any], Any] = _same,
) -> CallRecord:
    """A `calls` row (`CALL_COLUMNS`) as a record; `when` and `doc` turn the engine's
    stored times and JSON into datetimes and objects."""
    return CallRecord(
        call_id=row[0],
        started_at=when(row[1]),
        ended_at=when(row[2]),
        outcome=row[3],
        reason=row[4],
        transcript=doc(row[5]),
        extracted=doc(row[6]),
        summary=row[7],
        booking_id=row[8],
        stats=doc(row[9]),
    )


def call_record_values(record: CallRecord, *, when: Callable[[datetime], Any] = _same) -> list[Any]:
    """A record's values in `CALL_COLUMNS` order (JSON as text, times through `when`)."""
    return [
        record.call_id,
        when(record.started_at),
        when(record.ended_at),
        record.outcome,
        record.reason,
        json.dumps(record.transcript, ensure_ascii=False),
        json.dumps(record.extracted, ensure_ascii=False),
        record.summary,
        record.booking_id,
        json.dumps(record.stats, ensure_ascii=False),
    ]


def outbox_values(note: Notification, booking_id: str | None, due: Any) -> list[Any]:
    """One notification's outbox values: key, kind, channel, recipient, data (JSON; the
    booking id added), booking id, then `due` as the first attempt and creation time."""
    data = dict(note.data)
    if booking_id is not None:
        data.setdefault("id", booking_id)
    return [
        row_key(note, booking_id),
        note.kind,
        note.channel,
        note.recipient,
        json.dumps(data, ensure_ascii=False, default=str),
        booking_id,
        due,
        due,
    ]


def outbox_row(
    r: Sequence[Any],
    *,
    when: Callable[[Any], Any] = _same,
    doc: Callable[[Any], Any] = _same,
) -> OutboxRow:
    """An outbox row (the stores' column order) as a typed row; `when` and `doc` turn
    the engine's stored times and JSON into datetimes and objects."""
    return OutboxRow(
        id=r[0],
        key=r[1],
        kind=r[2],
        channel=r[3],
        recipient=r[4],
        data=doc(r[5]),
        booking_id=r[6],
        status=r[7],
        attempts=r[8],
        next_attempt_at=when(r[9]),
        created_at=when(r[10]),
        sent_at=when(r[11]),
        last_error=r[12],
        lease_owner=r[13],
    )


def bookings_between(
    d: Dialect,
    cols: str,
    start: datetime,
    end: datetime,
    *,
    master: str | None,
    include_cancelled: bool,
) -> Query:
    """Bookings overlapping [start, end) (active only unless `include_cancelled`),
    of one master or all, by start then master."""
    active = "" if include_cancelled else "status = 'active' AND "
    sql = f"SELECT {cols} FROM bookings WHERE {active}{d.start} < {d.p} AND {d.end} > {d.p}"
    params: list[Any] = [d.time(end), d.time(start)]
    if master is not None:
        sql += f" AND master = {d.p}"
        params.append(master)
    return sql + f" ORDER BY {d.start}, master", params


def bookings_all(d: Dialect, cols: str, *, include_cancelled: bool) -> Query:
    """Every booking (active only unless `include_cancelled`), by start then master."""
    where = "" if include_cancelled else " WHERE status = 'active'"
    return f"SELECT {cols} FROM bookings{where} ORDER BY {d.start}, master", []


def booking_by_id(d: Dialect, cols: str, booking_id: str) -> Query:
    """One booking by id, whatever its status."""
    return f"SELECT {cols} FROM bookings WHERE id = {d.p}", [booking_id]


def bookings_by_phone(d: Dialect, cols: str, phone: str, after: datetime | None) -> Query:
    """Active bookings of one phone (ending after `after` when given), by start."""
    sql = f"SELECT {cols} FROM bookings WHERE phone = {d.p} AND status = 'active'"
    params: list[Any] = [phone]
    if after is not None:
        sql += f" AND {d.end} > {d.p}"
        params.append(d.time(after))
    return sql + f" ORDER BY {d.start}", params


def calls_between(
    d: Dialect, cols: str, start: datetime, end: datetime, *, brief: bool = False
) -> Query:
    """Call records that started in [start, end), newest first; `brief`: with an empty
    transcript and turn log (lists and numbers need neither, and they are most bytes)."""
    if brief:
        cols = cols.replace("transcript, extracted", d.empty_docs)
    c = d.call_started
    sql = f"SELECT {cols} FROM calls WHERE {c} >= {d.p} AND {c} < {d.p} ORDER BY {c} DESC"
    return sql, [d.time(start), d.time(end)]


def outbox_retry(d: Dialect, row_id: int, owner: str, at: datetime, error: str) -> Query:
    """A leased row goes back to the queue, due at `at` (only its lease holder may)."""
    return (
        f"UPDATE outbox SET {d.next_attempt} = {d.p}, lease_owner = NULL,"
        f" {d.lease_until} = NULL, last_error = {d.p}"
        f" WHERE id = {d.p} AND lease_owner = {d.p} AND status = 'pending'",
        [d.outbox_time(at), error[:500], row_id, owner],
    )


def outbox_give_up(d: Dialect, row_id: int, owner: str, status: str, error: str) -> Query:
    """A leased row is finished unsent: `failed` or `skipped` (only its lease holder may)."""
    return (
        f"UPDATE outbox SET status = {d.p}, lease_owner = NULL, {d.lease_until} = NULL,"
        f" last_error = {d.p} WHERE id = {d.p} AND lease_owner = {d.p} AND status = 'pending'",
        [status, error[:500], row_id, owner],
    )


def outbox_rows(d: Dialect, cols: str, status: str | None, limit: int) -> Query:
    """Outbox rows (of one status, or all), newest first."""
    where = f"WHERE status = {d.p}" if status else ""
    params: list[Any] = [status, limit] if status else [limit]
    return f"SELECT {cols} FROM outbox {where} ORDER BY id DESC LIMIT {d.p}", params


class SharedBookingReads:
    """The booking reads both stores answer the same way; a store sets `dialect` and
    `booking_columns` and runs a query with `_bookings`."""

    dialect: Dialect
    booking_columns: str

    async def _bookings(self, query: Query) -> list[Booking]:
        """Run a booking query and map its rows (the store's own connection handling)."""
        raise NotImplementedError

    async def list_between(
        self,
        start: datetime,
        end: datetime,
        *,
        master: str | None = None,
        include_cancelled: bool = False,
    ) -> Sequence[Booking]:
        """Bookings overlapping [start, end), active only unless `include_cancelled`."""
        return await self._bookings(
            bookings_between(
                self.dialect,
                self.booking_columns,
                start,
                end,
                master=master,
                include_cancelled=include_cancelled,
            )
        )

    async def list_all(self, *, include_cancelled: bool = False) -> Sequence[Booking]:
        """Every booking (active only unless `include_cancelled`)."""
        return await self._bookings(
            bookings_all(self.dialect, self.booking_columns, include_cancelled=include_cancelled)
        )

    async def get(self, booking_id: str) -> Booking | None:
        """One booking by id, or None."""
        rows = await self._bookings(booking_by_id(self.dialect, self.booking_columns, booking_id))
        return rows[0] if rows else None

    async def find_by_phone(
        self, phone: str, *, after: datetime | None = None
    ) -> Sequence[Booking]:
        """Active bookings of `phone`, ending after `after` when given."""
        return await self._bookings(
            bookings_by_phone(self.dialect, self.booking_columns, phone, after)
        )


class SharedOutboxWrites:
    """The outbox outcomes and listing both stores answer the same way; a store sets
    `dialect` and `outbox_columns`, runs an update with `_finish` and a read with `_rows`."""

    dialect: Dialect
    outbox_columns: str

    async def _finish(self, text: str, params: Sequence[Any]) -> bool:
        """Run one lease-holder update; True when it changed the row."""
        raise NotImplementedError

    async def _rows(self, query: Query) -> list[OutboxRow]:
        """Run an outbox read and map its rows."""
        raise NotImplementedError

    async def mark_retry(self, row_id: int, owner: str, *, at: datetime, error: str) -> bool:
        """Not delivered yet: due again at `at`."""
        return await self._finish(*outbox_retry(self.dialect, row_id, owner, at, error))

    async def mark_failed(
        self, row_id: int, owner: str, *, error: str, status: str = "failed"
    ) -> bool:
        """Given up (`failed`) or deliberately not sent (`skipped`)."""
        return await self._finish(*outbox_give_up(self.dialect, row_id, owner, status, error))

    async def list(self, *, status: str | None = None, limit: int = 200) -> list[OutboxRow]:
        """Newest first."""
        return await self._rows(outbox_rows(self.dialect, self.outbox_columns, status, limit))
