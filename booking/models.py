"""Booking records and the errors the store raises."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# No 0/O/1/I/L: ids are read aloud and typed by staff.
_ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_booking_id() -> str:
    """A random 6-character booking id a caller can read out (from `_ID_ALPHABET`)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


class StoreError(Exception):
    """The booking store failed (connection, schema...)."""


class SlotTaken(StoreError):
    """The master already has an active booking overlapping the wanted time."""


@dataclass(frozen=True, slots=True)
class Booking:
    """A stored booking: who, what, with whom, when (salon time), its status and change
    counter."""

    id: str
    call_id: str | None
    service: str
    master: str
    start: datetime
    end: datetime
    name: str
    phone: str
    status: str = "active"
    created_at: datetime | None = None
    # Change counter: bumped by every change (cancel from the bot, the page or the CLI);
    # the calendar feed publishes it as SEQUENCE (RFC 5545 3.8.7.4).
    seq: int = 0

    def to_json(self, service_name: str | None = None) -> dict[str, Any]:
        """The wire shape (`voicebot simulate`'s `bookings` list, webhook, CLI)."""
        d: dict[str, Any] = {
            "id": self.id,
            "service": self.service,
            "service_name": service_name or self.service,
            "master": self.master,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "name": self.name,
            "phone": self.phone,
            "status": self.status,
        }
        if self.created_at is not None:
            d["created_at"] = self.created_at.isoformat()
        return d


@dataclass(frozen=True, slots=True)
class NewBooking:
    """What the dialogue asks the store to book."""

    service: str
    master: str
    start: datetime
    end: datetime
    name: str
    phone: str
    call_id: str | None = None


@dataclass(slots=True)
class CallRecord:
    """One finished call as stored: what was played and heard, what was understood.

    `stats` holds the engine-independent figures the salon page shows: `channel`,
    `turn_latency_ms` (voice-to-voice per answered turn, ms), `notes` (e.g. an
    identity check that failed and the call-back it asked for).
    """

    call_id: str
    started_at: datetime
    ended_at: datetime
    outcome: str
    reason: str
    transcript: list[dict[str, Any]] = field(default_factory=list)
    extracted: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    booking_id: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (times as ISO strings)."""
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["ended_at"] = self.ended_at.isoformat()
        return d
