"""What a purge or a deletion removed, and its printed deletion act.

152-FZ (art. 21) wants each destruction of personal data documented; the act lists
record ids and dates only, never the data itself, so it can be filed and logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from voicebot.redact import mask_number


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """Ids touched by one purge or deletion.

    bookings_anonymized: booking ids whose name and phone were erased.
    calls_deleted: call ids whose records (transcript, summary, notes) were deleted.
    notifications_deleted: notification outbox row ids deleted (they copy the booking).
    """

    bookings_anonymized: tuple[str, ...] = ()
    calls_deleted: tuple[str, ...] = ()
    notifications_deleted: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """True when nothing was removed."""
        return not (self.bookings_anonymized or self.calls_deleted or self.notifications_deleted)


def deletion_act(report: PurgeReport, *, subject: str, at: datetime, store: str) -> str:
    """The act as printed by `voicebot privacy forget|purge` (Russian, plain text).

    `subject` is a phone (printed masked) or a description of the retention rule.
    """
    who = mask_number(subject) if subject.startswith("+") else subject
    lines = [
        "АКТ об уничтожении персональных данных",
        f"Дата и время: {at.isoformat(timespec='seconds')}",
        f"Субъект / основание: {who}",
        f"Хранилище: {store}",
        f"Записи клиентов обезличены (имя и телефон стёрты): {len(report.bookings_anonymized)}",
        *(f"  - запись {bid}" for bid in report.bookings_anonymized),
        f"Записи звонков удалены (расшифровка, итог, заметки): {len(report.calls_deleted)}",
        *(f"  - звонок {cid}" for cid in report.calls_deleted),
        f"Уведомления удалены из очереди отправки: {len(report.notifications_deleted)}",
        *(f"  - уведомление {nid}" for nid in report.notifications_deleted),
    ]
    if report.empty:
        lines.append("Данных не найдено; ничего не удалено.")
    return "\n".join(lines) + "\n"
