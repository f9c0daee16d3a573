"""Typed dialogue state: the phase of the call and the slots collected so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from typing import Any

from booking.availability import Option
from booking.models import Booking
from booking.privacy.identity import ProofState


class Phase(StrEnum):
    """The phases of a booking call (see booking.transitions)."""

    GREETING = "greeting"
    COLLECTING = "collecting"
    OFFERING = "offering_alternatives"
    CONFIRMING = "confirming"
    BOOKED = "booked"
    CANCEL_FLOW = "cancel_flow"
    TRANSFER = "transfer"
    ENDED = "ended"


ACTIVE_PHASES = (Phase.COLLECTING, Phase.OFFERING, Phase.CONFIRMING, Phase.CANCEL_FLOW)
TERMINAL_PHASES = (Phase.BOOKED, Phase.TRANSFER, Phase.ENDED)


@dataclass(slots=True)
class Slots:
    """What the booking needs, as collected so far (None = not yet)."""

    service: str | None = None
    master_request: str | None = None  # what the caller asked for; None = any master
    master: str | None = None  # the master the checked time is with
    date: date | None = None
    time: time | None = None
    name: str | None = None
    phone: str | None = None
    phone_from_caller_id: bool = False

    def to_json(self) -> dict[str, Any]:
        """The slots as JSON values (call record, transfer payload)."""
        return {
            "service": self.service,
            "master": self.master or self.master_request,
            "date": self.date.isoformat() if self.date else None,
            "time": self.time.strftime("%H:%M") if self.time else None,
            "name": self.name,
            "phone": self.phone,
        }


@dataclass(slots=True)
class BookingState:
    """One call's mutable dialogue state: phase, slots, pending offers and
    clarifications, cancel-flow candidates, counters and the transition history."""

    phase: Phase = Phase.GREETING
    slots: Slots = field(default_factory=Slots)
    part_of_day: str | None = None  # vague time waiting for a concrete one
    after: time | None = None  # «после шести»: offer times from here on
    time_options: tuple[time, ...] = ()  # «в 8» in a salon open 08–22: asked which
    phone_buffer: str = ""  # digits of a phone said in pieces, until it is complete
    misses: dict[str, int] = field(default_factory=dict)  # failed tries per slot
    offers: list[Option] = field(default_factory=list)
    announced_master: str | None = None
    cancel_phone: str | None = None
    cancel_candidates: list[Booking] = field(default_factory=list)
    proof: ProofState = field(default_factory=ProofState)  # who may hear a booking
    booking: Booking | None = None
    cancelled: list[Booking] = field(default_factory=list)
    outcome: str = "no_booking"
    last_prompt: str = ""
    silence_count: int = 0
    turns: int = 0
    llm_turns: int = 0
    llm_failures: int = 0
    history: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, trigger)
