"""Retention and deletion on request for the PostgreSQL store.

Same rules as sqlite_privacy. An UPDATE or DELETE leaves the old row version on disk
until VACUUM reclaims it, so both end with a plain VACUUM of the two tables (the pool's
connections are autocommit, which VACUUM needs).
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from booking.privacy.act import PurgeReport
from booking.privacy.match import mentions_phone

_ANON = "UPDATE bookings SET name = '', phone = '', seq = seq + 1 WHERE {} RETURNING id"


async def _vacuum(conn: psycopg.AsyncConnection) -> None:
    for table in ("bookings", "calls", "outbox"):
        await conn.execute(f"VACUUM {table}")


async def purge(
    conn: psycopg.AsyncConnection, *, calls_before: datetime, visits_before: datetime
) -> PurgeReport:
    """Delete calls started before `calls_before`; erase name and phone of bookings that
    ended before `visits_before`, with the call records that made them."""
    async with conn.transaction():
        cur = await conn.execute(
            _ANON.format("end_at < %s AND (name <> '' OR phone <> '')"), (visits_before,)
        )
        anonymized = [r[0] for r in await cur.fetchall()]
        cur = await conn.execute(
            "DELETE FROM calls WHERE started_at < %s OR booking_id = ANY(%s) RETURNING call_id",
            (calls_before, anonymized),
        )
        calls = [r[0] for r in await cur.fetchall()]
        # Delivered (or given-up) notifications of anonymized bookings go too; pending
        # ones are still owed to someone and stay until sent.
        cur = await conn.execute(
            "DELETE FROM outbox WHERE booking_id = ANY(%s) AND status <> 'pending' RETURNING id",
            (anonymized,),
        )
        notes = tuple(str(r[0]) for r in await cur.fetchall())
    if anonymized or calls or notes:
        await _vacuum(conn)
    return PurgeReport(tuple(anonymized), tuple(calls), notes)


async def forget_phone(conn: psycopg.AsyncConnection, phone: str) -> PurgeReport:
    """Erase every record of the person with this E.164 phone."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id, call_id FROM bookings WHERE phone = %s FOR UPDATE", (phone,)
        )
        rows = await cur.fetchall()
        booking_ids = {r[0] for r in rows}
        booking_calls = {r[1] for r in rows if r[1]}
        cur = await conn.execute(_ANON.format("phone = %s"), (phone,))
        anonymized = [r[0] for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT call_id, booking_id,"
            " transcript::text || extracted::text || summary || stats::text FROM calls"
        )
        calls = [
            r[0]
            for r in await cur.fetchall()
            if r[0] in booking_calls or r[1] in booking_ids or mentions_phone(r[2], phone)
        ]
        await conn.execute("DELETE FROM calls WHERE call_id = ANY(%s)", (calls,))
        # Every notification about the person goes, pending ones too.
        cur = await conn.execute("SELECT id, booking_id, recipient, data::text FROM outbox")
        ids = [
            r[0]
            for r in await cur.fetchall()
            if r[1] in booking_ids or r[2] == phone or mentions_phone(r[3], phone)
        ]
        await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
    await _vacuum(conn)
    return PurgeReport(tuple(anonymized), tuple(calls), tuple(str(i) for i in ids))
