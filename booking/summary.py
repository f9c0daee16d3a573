"""The call summary stored with the call record: a template, or YandexGPT's when present."""

from __future__ import annotations

from collections.abc import Sequence

from booking.catalog import Catalog
from booking.extract.phone import format_phone
from booking.replies import fmt_time, master_dat, service_acc
from booking.state import BookingState
from voicebot.dialogue import TranscriptLine

_OUTCOMES = {
    "transfer": "попросил соединить с администратором",
    "hangup": "перестал отвечать, звонок завершён",
    "no_booking": "запись не создана",
}


def template_summary(state: BookingState, catalog: Catalog) -> str:
    """A one-paragraph call summary from the final state, without a model."""
    s = state.slots
    who = s.name or "Клиент"
    if s.phone:
        who += f" ({format_phone(s.phone)})"
    if state.booking is not None:
        b = state.booking
        return (
            f"{who} записан(а) на {service_acc(catalog.service(b.service).name)} "
            f"к мастеру {master_dat(b.master)} {b.start.day:02d}.{b.start.month:02d} "
            f"в {fmt_time(b.start)}, номер записи {b.id}."
        )
    if state.cancelled:
        b = state.cancelled[-1]
        return (
            f"{who} отменил(а) запись {b.id} на {b.start.day:02d}.{b.start.month:02d} "
            f"в {fmt_time(b.start)}."
        )
    wanted = []
    if s.service:
        wanted.append(catalog.service(s.service).name.lower())
    if s.date:
        wanted.append(s.date.strftime("%d.%m"))
    if s.time:
        wanted.append(fmt_time(s.time))
    detail = f", хотел(а): {' '.join(wanted)}" if wanted else ""
    return f"{who}{detail}; {_OUTCOMES.get(state.outcome, state.outcome)}."


def transcript_text(transcript: Sequence[TranscriptLine]) -> str:
    """The transcript as «Клиент: …» / «Бот: …» lines for the summary prompt."""
    return "\n".join(
        f"{'Клиент' if line.role == 'caller' else 'Бот'}: {line.text}" for line in transcript
    )
