"""What the salon sees of a stored call: its outcome in one word, its latency, and
which slots the bot misunderstood or had to ask again. Pure functions of a CallRecord."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from booking.models import CallRecord

OUTCOMES = {
    "booked": "запись",
    "no_booking": "без записи",
    "handoff": "передан администратору",
    "hung_up": "клиент положил трубку",
    "error": "ошибка",
    "cancelled": "отмена записи",
}
SLOT_NAMES = {
    "service": "услуга",
    "master": "мастер",
    "date": "дата",
    "time": "время",
    "name": "имя",
    "phone": "телефон",
    "confirm": "подтверждение",
    "choice": "выбор варианта",
}


def outcome_of(call: CallRecord) -> str:
    """The call's outcome: booked, cancelled, handoff, error, hung_up or no_booking."""
    if call.outcome == "booked":
        return "booked"
    if call.outcome == "transfer":
        return "handoff"
    if call.stats.get("errors") or "error" in call.reason:
        return "error"
    if call.outcome == "cancelled":
        return "cancelled"
    if call.reason.startswith("caller"):
        return "hung_up"
    return "no_booking"


def p95(values: list[float]) -> float | None:
    """The 95th percentile (inclusive method), None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@dataclass(frozen=True, slots=True)
class SlotTrouble:
    """Slots the bot asked about more than once, and slots the caller had to correct."""

    re_asked: tuple[str, ...]
    misunderstood: tuple[str, ...]
    not_understood_turns: int


def slot_trouble(call: CallRecord) -> SlotTrouble:
    """From the stored turn log: `expecting` (what the bot had asked) per caller turn,
    `resolved` (whether anything was understood), `extracted` (slot values)."""
    turns: list[dict[str, Any]] = list(call.extracted.get("turns") or [])
    asked = Counter(str(t["expecting"]) for t in turns if t.get("expecting"))
    re_asked = tuple(SLOT_NAMES.get(k, k) for k, n in asked.items() if n > 1)
    seen: dict[str, Any] = {}
    changed: list[str] = []
    for t in turns:
        for key, value in (t.get("extracted") or {}).items():
            if key not in SLOT_NAMES:
                continue
            if key in seen and seen[key] != value and key not in changed:
                changed.append(key)
            seen[key] = value
    misunderstood = tuple(SLOT_NAMES[k] for k in changed)
    lost = sum(1 for t in turns if t.get("resolved") is False)
    return SlotTrouble(re_asked, misunderstood, lost)


def row(call: CallRecord) -> dict[str, Any]:
    """The calls table's row for one call."""
    lat = [float(x) for x in call.stats.get("turn_latency_ms") or []]
    outcome = outcome_of(call)
    return {
        "id": call.call_id,
        "started_at": call.started_at,
        "channel": call.stats.get("channel", "—"),
        "duration_s": max(0, round((call.ended_at - call.started_at).total_seconds())),
        "outcome": outcome,
        "outcome_label": OUTCOMES[outcome],
        "latency_median_ms": round(statistics.median(lat)) if lat else None,
        "latency_max_ms": round(max(lat)) if lat else None,
        "latency_ms": [round(x) for x in lat],
        "notes": len(call.stats.get("notes") or []),
    }
