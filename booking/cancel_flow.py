"""Cancelling an existing booking by phone: lookup, read back, cancel or keep.

A mixin of `BookingMachine` (it shares the call's state, store and templates); kept apart
so the booking flow and the cancel flow can change independently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from booking.extract import Extraction
from booking.machine_base import MachineBase
from booking.privacy.identity import name_matches
from booking.replies import fmt_date, fmt_time
from booking.state import Phase
from voicebot.dialogue import DialogueAction, ReplyPart

if TYPE_CHECKING:
    from booking.models import Booking, NewBooking
    from booking.notify.message import Kind, Notification


class CancelFlow(MachineBase):
    """The cancel-by-phone phase of a call (`Phase.CANCEL_FLOW`)."""

    def _notes(self, kind: Kind, booking: Booking | NewBooking) -> Sequence[Notification]:
        """The outbox rows for `kind` about `booking` (none without a notifier)."""
        return self.notify(kind, booking) if self.notify is not None else ()

    async def _cancel_start(self, ex: Extraction) -> list[ReplyPart]:
        """A cancel request: a booking code said with it proves the booking at once."""
        st = self.state
        if by_code := await self.identity.by_code(self._text, self.now()):
            st.cancel_candidates = by_code
            return [self._cancel_offer()]
        phone = ex.phone or st.cancel_phone or self._known_phone()
        return await self._cancel_lookup(phone, ex.name or st.slots.name)

    async def _cancel_lookup(self, phone: str | None, name: str | None = None) -> list[ReplyPart]:
        """Bookings for `phone`; read out only to its owner (caller id), or with `name`
        (said on this call) matching the booking; else ask for a proof."""
        st = self.state
        if phone is None:
            return [self._prompt(self.r("cancel_ask_phone"), "phone")]
        st.cancel_phone = phone
        found = await self.backend.find_by_phone(phone, after=self.now())
        if not self.identity.owns(phone):
            # A number anyone can say: nothing is read out before a proof.
            if named := [b for b in found if name_matches(name, b)]:
                st.cancel_candidates = named
                return [self._cancel_offer()]
            self.identity.wait_for_proof(st.proof, phone, found)
            return [self._prompt(self.r("cancel_ask_proof"), "name")]
        if not found:
            self._goto(Phase.COLLECTING, "kept")
            text = self.r("cancel_not_found", phone=self.r.phone(phone))
            return [self._prompt(text, "service")]
        st.cancel_candidates = list(found)
        return [self._cancel_offer()]

    def _cancel_offer(self) -> str:
        b = self.state.cancel_candidates[0]
        text = self.r(
            "cancel_confirm",
            service=self.catalog.service(b.service).name.lower(),
            date=fmt_date(b.start.date(), self.today()),
            time=fmt_time(b.start),
            master=b.master,
        )
        return self._prompt(text, "confirm")

    async def _cancel_proof(self, ex: Extraction) -> list[ReplyPart]:
        """The caller's answer to «назовите номер записи или имя» (privacy/identity.py)."""
        found = [b.id for b in self.state.proof.pending or ()]
        proven = await self.identity.prove(self.state.proof, self._text, ex.name, self.now())
        if proven:
            self.state.cancel_candidates = proven
            self._goto(Phase.CANCEL_FLOW, "lookup")
            return [self._cancel_offer()]
        self.identity.refuse(self.state.proof, self.now(), found)
        self._goto(Phase.COLLECTING, "kept")
        return [self._prompt(self.r("cancel_not_proven"), "service")]

    async def _cancel_turn(self, ex: Extraction) -> list[ReplyPart]:
        st = self.state
        if st.proof.pending is not None:
            return await self._cancel_proof(ex)
        if not st.cancel_candidates:
            if ex.phone:
                return await self._cancel_lookup(ex.phone, ex.name or st.slots.name)
            return [self.r("not_understood"), self._prompt(self.r("cancel_ask_phone"), "phone")]
        if ex.answer == "yes":
            b = st.cancel_candidates.pop(0)
            done = await self.backend.cancel(b.id, notify=self._notes("cancelled", b))
            if done is not None:
                st.cancelled.append(done)
                if st.outcome != "booked":
                    st.outcome = "cancelled"
            self._goto(Phase.ENDED, "cancelled")
            return [
                DialogueAction("booking_cancelled", self._booking_json(done or b)),
                self.r("cancelled"),
                DialogueAction("hangup", {"reason": "cancelled"}),
            ]
        if ex.answer == "no":
            st.cancel_candidates.pop(0)
            if st.cancel_candidates:
                self._goto(Phase.CANCEL_FLOW, "lookup")
                return [self._cancel_offer()]
            self._goto(Phase.COLLECTING, "kept")
            return [self._prompt(self.r("cancel_kept"), "service")]
        return [self.r("not_understood"), self.state.last_prompt]
