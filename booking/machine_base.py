"""What every part of the booking state machine shares: the call's catalog, store,
templates, clock and typed state, and the helpers that change the phase or prompt.

`BookingMachine` is assembled from this base and the flow mixins (`Offers`,
`CancelFlow`); each mixin sees the same state through these attributes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime

from booking.backends.base import BookingBackend
from booking.catalog import Catalog
from booking.extract import Expecting, Extraction
from booking.models import Booking
from booking.notify.message import Notify
from booking.privacy.identity import IdentityGate
from booking.replies import Replies, join_ru
from booking.state import BookingState, Phase
from booking.transitions import TransitionError, allowed
from voicebot.clock import Clock
from voicebot.dialogue import ReplyPart

Understand = Callable[[str, Expecting], Awaitable[Extraction]]


class MachineBase:
    """Shared attributes and helpers; the flows live in the subclasses."""

    catalog: Catalog
    backend: BookingBackend
    availability: BookingBackend  # check / free_starts / nearest
    notify: Notify | None
    r: Replies
    clock: Clock
    state: BookingState
    expecting: Expecting
    identity: IdentityGate  # who may hear or cancel a booking
    _text: str  # the caller's words this turn

    def now(self) -> datetime:
        """The call's current time in the salon's time zone."""
        return self.clock.now().astimezone(self.catalog.salon.tz)

    def today(self) -> date:
        """The salon's local date."""
        return self.now().date()

    def _goto(self, target: Phase, trigger: str) -> None:
        src = self.state.phase
        if not allowed(src, target, trigger):
            raise TransitionError(f"{src} -[{trigger}]-> {target} is not declared")
        self.state.history.append((src.value, target.value, trigger))
        self.state.phase = target

    def _service_list(self) -> str:
        return join_ru([s.name.lower() for s in self.catalog.services])

    def _prompt(self, text: str, expecting: Expecting) -> str:
        self.state.last_prompt = text
        self.expecting = expecting
        return text

    def _booking_json(self, b: Booking) -> dict[str, str]:
        d = b.to_json(self.catalog.service(b.service).name)
        d.pop("status", None)
        d.pop("created_at", None)
        return d

    def _ask(self, text: str, expecting: Expecting) -> list[ReplyPart]:
        """Ask for a missing slot: always the collecting phase."""
        self._goto(Phase.COLLECTING, "slot")
        return [self._prompt(text, expecting)]

    async def _advance(self, *, list_free: bool = False) -> list[ReplyPart]:
        """Ask for the next missing slot, check availability, or read back."""
        raise NotImplementedError

    def _with_ack(self, before: tuple[object, ...], parts: list[ReplyPart]) -> list[ReplyPart]:
        """`parts` led by an acknowledgement of the slots filled since `before`."""
        raise NotImplementedError

    def _apply(self, ex: Extraction) -> tuple[bool, list[ReplyPart]]:
        """Merge an extraction into the slots; (changed, notes to say)."""
        raise NotImplementedError
