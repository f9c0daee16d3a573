"""The channel protocol and the outcomes a delivery attempt can have.

`send` returns the provider's message id (or "") when the message was accepted, and
raises `RetryLater` (temporary: rate limit, 5xx, network; `after_s` when the provider
said how long), `Rejected` (this message can never go: bad number, bad text) or
`ChannelDown` (nothing can go through this channel until a person fixes it: bad token,
no money, IP blocked; the sender stops using the channel and raises an alert).
"""

from __future__ import annotations

from typing import Protocol

from booking.notify.message import OutboxRow
from booking.notify.templates import Rendered


class DeliveryError(Exception):
    """A failed delivery attempt."""


class RetryLater(DeliveryError):
    """Temporary failure; `after_s` is the provider's own wait hint (seconds)."""

    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Rejected(DeliveryError):
    """Permanent failure for this message."""


class ChannelDown(DeliveryError):
    """The channel cannot deliver anything until its configuration is fixed."""


class Channel(Protocol):
    """One way of telling someone."""

    name: str

    async def send(self, row: OutboxRow, message: Rendered) -> str:
        """Deliver; the provider's message id. Raises a `DeliveryError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
