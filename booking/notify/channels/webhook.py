"""The booking webhook (formerly posted straight from the dialogue), now an outbox
channel: POST of the event JSON with an `Idempotency-Key` header (the outbox row key),
so a receiver can drop the repeat of a delivery whose answer was lost."""

from __future__ import annotations

import httpx

from booking.notify.channels.base import Rejected, RetryLater
from booking.notify.message import OutboxRow
from booking.notify.templates import Rendered


def classify(status: int) -> None:
    """Raise for a non-2xx: 408/429/5xx are temporary, other 4xx permanent."""
    if 200 <= status < 300:
        return
    if status in (408, 429) or status >= 500:
        raise RetryLater(f"webhook HTTP {status}")
    raise Rejected(f"webhook HTTP {status}")


class WebhookChannel:
    """`Channel` posting JSON to one URL."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, row: OutboxRow, message: Rendered) -> str:
        """POST `{event, ...booking fields}`."""
        payload = {**row.data, "event": row.kind}
        try:
            resp = await self._http.post(
                self.url, json=payload, headers={"Idempotency-Key": row.key}
            )
        except httpx.HTTPError as e:
            raise RetryLater(f"webhook: {type(e).__name__}") from None
        classify(resp.status_code)
        return ""

    async def aclose(self) -> None:
        """Close the HTTP pool."""
        await self._http.aclose()
