"""Retention and deletion on request for the SQLite store (run inside its lock).

A person's phone can hide in free text (the transcript says «8 916 123-45-67»), so call
records are matched by the phone's national digits in their whole text, not by column.
After deleting, the WAL is checkpointed and the file vacuumed: with `secure_delete`
this leaves no copy of the erased values in the database files.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from booking.privacy.act import PurgeReport
from booking.privacy.match import mentions_phone


def _outbox_rows(conn: sqlite3.Connection) -> list[tuple[int, str | None, str, str, str]]:
    """(id, booking_id, recipient, data, status) of every outbox row (none without one)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchone():
        return []
    return conn.execute("SELECT id, booking_id, recipient, data, status FROM outbox").fetchall()


def _delete_outbox(conn: sqlite3.Connection, ids: list[int]) -> tuple[str, ...]:
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
    return tuple(str(i) for i in ids)


def _compact(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _anonymize(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> list[str]:
    ids = [r[0] for r in conn.execute(f"SELECT id FROM bookings WHERE {where}", params)]
    if ids:
        conn.execute(
            f"UPDATE bookings SET name = '', phone = '', seq = seq + 1 WHERE {where}", params
        )
    return ids


def purge(
    conn: sqlite3.Connection, *, calls_before: datetime, visits_before: datetime
) -> PurgeReport:
    """Delete calls started before `calls_before`; erase name and phone of bookings that
    ended before `visits_before`, with the call records that made them."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        anonymized = _anonymize(
            conn, "end_ts < ? AND (name != '' OR phone != '')", (int(visits_before.timestamp()),)
        )
        old = [
            r[0]
            for r in conn.execute(
                "SELECT call_id FROM calls WHERE started_ts < ?", (int(calls_before.timestamp()),)
            )
        ]
        linked = [
            r[0]
            for bid in anonymized
            for r in conn.execute("SELECT call_id FROM calls WHERE booking_id = ?", (bid,))
        ]
        calls = list(dict.fromkeys(old + linked))
        conn.executemany("DELETE FROM calls WHERE call_id = ?", [(c,) for c in calls])
        # Delivered (or given-up) notifications of anonymized bookings go too; pending
        # ones are still owed to someone and stay until sent.
        gone = set(anonymized)
        notes = _delete_outbox(
            conn, [r[0] for r in _outbox_rows(conn) if r[1] in gone and r[4] != "pending"]
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if anonymized or calls or notes:
        _compact(conn)
    return PurgeReport(tuple(anonymized), tuple(calls), notes)


def forget_phone(conn: sqlite3.Connection, phone: str) -> PurgeReport:
    """Erase every record of the person with this E.164 phone."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute("SELECT id, call_id FROM bookings WHERE phone = ?", (phone,)).fetchall()
        booking_ids = {r[0] for r in rows}
        booking_calls = {r[1] for r in rows if r[1]}
        anonymized = _anonymize(conn, "phone = ?", (phone,))
        calls = [
            r[0]
            for r in conn.execute(
                "SELECT call_id, booking_id, transcript || extracted || summary || stats FROM calls"
            )
            if r[0] in booking_calls or r[1] in booking_ids or mentions_phone(r[2], phone)
        ]
        conn.executemany("DELETE FROM calls WHERE call_id = ?", [(c,) for c in calls])
        # Every notification about the person goes, pending ones too: an SMS to someone
        # who asked to be forgotten must not be sent after the request.
        notes = _delete_outbox(
            conn,
            [
                r[0]
                for r in _outbox_rows(conn)
                if r[1] in booking_ids or r[2] == phone or mentions_phone(r[3], phone)
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _compact(conn)
    return PurgeReport(tuple(anonymized), tuple(calls), notes)
