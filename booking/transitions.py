"""The declared phases and transitions of the booking dialogue.

`TRANSITIONS` is the single source of truth: `BookingMachine._goto` refuses any phase
change not listed here, and `booking.diagram` renders it to docs/booking-state-machine.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from booking.state import ACTIVE_PHASES, Phase


@dataclass(frozen=True, slots=True)
class Transition:
    """One declared edge: `source` -[trigger, guard]-> `target`."""

    source: Phase
    target: Phase
    trigger: str
    guard: str = ""


def _global(trigger: str, target: Phase, guard: str) -> tuple[Transition, ...]:
    """The same edge from every active phase (caller intents that apply anywhere)."""
    return tuple(Transition(p, target, trigger, guard) for p in ACTIVE_PHASES)


TRANSITIONS: tuple[Transition, ...] = (
    Transition(Phase.GREETING, Phase.COLLECTING, "greet"),
    Transition(Phase.COLLECTING, Phase.COLLECTING, "slot", "a slot is still missing"),
    Transition(Phase.COLLECTING, Phase.OFFERING, "taken", "wanted time is not free"),
    Transition(Phase.COLLECTING, Phase.OFFERING, "vague_time", "part of day, no exact time"),
    Transition(Phase.COLLECTING, Phase.CONFIRMING, "complete", "all slots filled and free"),
    Transition(Phase.OFFERING, Phase.COLLECTING, "slot", "option taken, name/phone missing"),
    Transition(Phase.OFFERING, Phase.COLLECTING, "declined", "no option fits"),
    Transition(Phase.OFFERING, Phase.OFFERING, "taken", "new wanted time not free either"),
    Transition(Phase.OFFERING, Phase.OFFERING, "vague_time", "part of day, no exact time"),
    Transition(Phase.OFFERING, Phase.CONFIRMING, "complete", "option taken, all slots filled"),
    Transition(Phase.CONFIRMING, Phase.BOOKED, "yes", "store committed the booking"),
    Transition(Phase.CONFIRMING, Phase.OFFERING, "taken", "slot taken meanwhile (SlotTaken)"),
    Transition(Phase.CONFIRMING, Phase.OFFERING, "vague_time", "corrected to a part of day"),
    Transition(Phase.CONFIRMING, Phase.COLLECTING, "no", "caller wants a fix"),
    Transition(Phase.CONFIRMING, Phase.COLLECTING, "slot", "a correction left a slot empty"),
    Transition(Phase.CONFIRMING, Phase.COLLECTING, "bad_phone", "the CRM refused the phone"),
    Transition(Phase.CONFIRMING, Phase.CONFIRMING, "complete", "correction, read back again"),
    Transition(Phase.CONFIRMING, Phase.TRANSFER, "store_error", "booking could not be saved"),
    Transition(Phase.CANCEL_FLOW, Phase.CANCEL_FLOW, "lookup", "phone given / next candidate"),
    Transition(Phase.CANCEL_FLOW, Phase.ENDED, "cancelled", "yes, booking cancelled"),
    Transition(Phase.CANCEL_FLOW, Phase.COLLECTING, "kept", "no / nothing found"),
    Transition(Phase.BOOKED, Phase.ENDED, "goodbye"),
    *_global("cancel_request", Phase.CANCEL_FLOW, "caller asks to cancel a booking"),
    *_global("human", Phase.TRANSFER, "caller asks for a person"),
    *_global("backend_error", Phase.TRANSFER, "the store/CRM cannot answer"),
    *_global("goodbye", Phase.ENDED, "caller says goodbye"),
    *_global("silence", Phase.ENDED, "N reprompts without an answer"),
    *_global("restart", Phase.COLLECTING, "caller wants to start over"),
)
_ALLOWED = {(t.source, t.target, t.trigger) for t in TRANSITIONS}


class TransitionError(RuntimeError):
    """The code tried a phase change the declared machine does not have."""


def allowed(source: Phase, target: Phase, trigger: str) -> bool:
    """Whether the table declares `source` -[trigger]-> `target`."""
    return (source, target, trigger) in _ALLOWED
