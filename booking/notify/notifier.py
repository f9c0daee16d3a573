"""Which outbox rows an event produces, from the `notify:` settings (pure).

The dialogue calls `rows(kind, booking)` (the `Notify` callable) and hands the rows to
the backend, which writes them with the booking; `handoff_rows` is for a call passed
to a person. Telegram and e-mail go to the salon, SMS to the client's phone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from booking.catalog import Catalog
from booking.models import Booking, NewBooking
from booking.notify.message import Kind, Notification
from booking.notify.settings import NotifySettings


class Notifier:
    """Builds rows for the active channels that subscribe to an event."""

    def __init__(
        self,
        settings: NotifySettings,
        catalog: Callable[[], Catalog],
        *,
        crm_sends_sms: bool = False,
    ) -> None:
        self.s = settings
        self._catalog = catalog
        # YCLIENTS already texts the client (booking.yclients.notify_by_sms > 0).
        self.sms_skipped = crm_sends_sms and settings.sms.skip_if_yclients_sms

    def channels_for(self, kind: str) -> list[str]:
        """Active channels subscribed to `kind` (alerts go to the salon's channels)."""
        s = self.s
        out = []
        if s.telegram.active and (kind == "alert" or kind in s.telegram.events):
            out.append("telegram")
        if s.sms.active and not self.sms_skipped and kind in s.sms.events:
            out.append("sms")
        if s.email.active and (kind == "alert" or kind in s.email.events):
            out.append("email")
        if s.webhook.active and kind in s.webhook.events:
            out.append("webhook")
        return out

    def _salon(self) -> dict[str, Any]:
        cat = self._catalog()
        return {"salon": cat.salon.name, "address": cat.salon.address}

    def rows(self, kind: Kind, booking: Booking | NewBooking) -> list[Notification]:
        """Rows about a booking (its id is added by the store/backend)."""
        cat = self._catalog()
        try:
            svc = cat.service(booking.service)
            name, price = svc.name, svc.price
        except KeyError:
            name, price = booking.service, 0
        data: dict[str, Any] = {
            "service": booking.service,
            "service_name": name,
            "price": price,
            "master": booking.master,
            "start": booking.start.isoformat(),
            "end": booking.end.isoformat(),
            "name": booking.name,
            "phone": booking.phone,
            "call_id": booking.call_id,
            "status": "cancelled" if kind == "cancelled" else "active",
            **self._salon(),
        }
        if isinstance(booking, Booking):
            data["id"] = booking.id
        return [
            Notification(kind, ch, data, recipient=booking.phone if ch == "sms" else "")  # type: ignore[arg-type]
            for ch in self.channels_for(kind)
        ]

    def handoff_rows(
        self, call_id: str, reason: str, slots: Mapping[str, Any], phone: str | None
    ) -> list[Notification]:
        """Rows for a call handed to a person (one per call and channel)."""
        names = {sv.id: sv.name for sv in self._catalog().services}
        wanted = ", ".join(
            str(names.get(str(v), v)) for k, v in slots.items() if v and k not in {"phone", "name"}
        )
        data = {
            "call_id": call_id,
            "reason": reason,
            "wanted": wanted or "—",
            "phone": phone or "",
            "name": str(slots.get("name") or ""),
            **self._salon(),
        }
        return [
            Notification(
                "handoff",
                ch,  # type: ignore[arg-type]
                data,
                recipient=(phone or "") if ch == "sms" else "",
                key=f"handoff:{ch}:{call_id}",
            )
            for ch in self.channels_for("handoff")
            if ch != "sms" or phone
        ]

    def alert_rows(self, reason: str, key: str) -> list[Notification]:
        """An operational alert to the salon's channels (e.g. SMS stopped)."""
        data = {"reason": reason, **self._salon()}
        return [
            Notification("alert", ch, data, key=f"alert:{ch}:{key}")  # type: ignore[arg-type]
            for ch in self.channels_for("alert")
            if ch in ("telegram", "email")
        ]
