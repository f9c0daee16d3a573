"""What the booking side asks to be told to someone: one outbox row per channel.

A `Notification` is written in the same transaction as the booking it is about (local
store) or right after the CRM confirmed it (YCLIENTS); the sender turns it into a
message later, so nothing about delivery sits on the caller's critical path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from booking.models import Booking, NewBooking

Kind = Literal["booked", "cancelled", "handoff", "alert"]
Channel = Literal["telegram", "sms", "email", "webhook"]
Status = Literal["pending", "sent", "failed", "skipped"]

KINDS: tuple[Kind, ...] = ("booked", "cancelled", "handoff", "alert")
CHANNELS: tuple[Channel, ...] = ("telegram", "sms", "email", "webhook")


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to enqueue.

    `data` is JSON-able (the booking's wire shape plus salon fields); the booking id is
    added by the store when it is only known inside the transaction. `recipient` is
    the client's E.164 phone for SMS, empty for channels whose address is configured
    (admin chat, admin mailbox, webhook URL). `key` makes the enqueue idempotent:
    a second row with the same key is not inserted (default kind:channel:booking id).
    """

    kind: Kind
    channel: Channel
    data: Mapping[str, Any]
    recipient: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A stored notification as the sender and `voicebot notifications list` see it."""

    id: int
    key: str
    kind: str
    channel: str
    recipient: str
    data: dict[str, Any]
    booking_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str = ""
    lease_owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Wire shape for `voicebot notifications list --json` (recipient masked)."""
        from voicebot.redact import mask_number

        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "channel": self.channel,
            "recipient": mask_number(self.recipient) if self.recipient else "",
            "booking_id": self.booking_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Queue depth and failures (for metrics, #17): counts by status, how many pending
    rows are due now and not leased (`due`), and the age in seconds of the oldest row
    still pending (0.0 when none)."""

    pending: int = 0
    due: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    oldest_pending_s: float = 0.0
    by_channel_failed: dict[str, int] = field(default_factory=dict)


def row_key(n: Notification, booking_id: str | None) -> str:
    """The idempotency key of a row: explicit, or kind:channel:booking id."""
    return n.key or f"{n.kind}:{n.channel}:{booking_id or ''}"


# The outbox rows for an event about a booking, decided by the provider from the
# `notify:` config so the dialogue knows nothing about channels.
Notify = Callable[[Kind, "Booking | NewBooking"], Sequence[Notification]]
