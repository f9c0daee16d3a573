"""Per-day figures for the Numbers page: calls, booking rate, handoffs, and median / p95
voice-to-voice latency of the day's answered turns (ms)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from booking.models import CallRecord
from booking.web.callview import outcome_of, p95


def per_day(
    calls: Iterable[CallRecord], first: date, last: date, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """One dict per day in [first, last] (days without calls included, with zeros)."""
    days: dict[date, list[CallRecord]] = {}
    d = first
    while d <= last:
        days[d] = []
        d += timedelta(days=1)
    for c in calls:
        day = c.started_at.astimezone(tz).date()
        if day in days:
            days[day].append(c)
    out = []
    for day, group in days.items():
        outcomes = [outcome_of(c) for c in group]
        lat = [float(x) for c in group for x in c.stats.get("turn_latency_ms") or []]
        booked = outcomes.count("booked")
        out.append(
            {
                "day": day.isoformat(),
                "calls": len(group),
                "booked": booked,
                "booking_rate": round(booked / len(group), 3) if group else None,
                "handoffs": outcomes.count("handoff"),
                "errors": outcomes.count("error"),
                "latency_median_ms": round(statistics.median(lat)) if lat else None,
                "latency_p95_ms": round(p95(lat) or 0) if lat else None,
                "turns": len(lat),
            }
        )
    return out
