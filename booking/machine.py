"""The booking dialogue as an explicit state machine.

Phases and the transitions between them are declared in `TRANSITIONS` (rendered to
docs/booking-state-machine.md by `booking.diagram`); every phase change in the code goes
through `_goto`, which refuses a transition the table does not declare. Guards are
deterministic checks on the typed state (slot filled, slot free, yes/no), so no LLM is
needed to move from "time chosen" to "confirm" to "booked".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from booking.availability import local_dt
from booking.backends.base import BookingBackend, InvalidPhone
from booking.cancel_flow import CancelFlow
from booking.catalog import Catalog
from booking.extract import Expecting, Extraction
from booking.extract.phone import mask_phone, normalize_phone
from booking.machine_base import Understand
from booking.metrics import booking_outcome
from booking.models import Booking, NewBooking, SlotTaken, StoreError
from booking.notify.message import Notify
from booking.offers import Offers
from booking.privacy.identity import IdentityGate
from booking.replies import (
    Replies,
    fmt_date,
    fmt_time,
    master_dat,
    service_acc,
)
from booking.slot_filling import SlotFilling
from booking.state import ACTIVE_PHASES, BookingState, Phase
from booking.transitions import TRANSITIONS, TransitionError
from voicebot.clock import Clock
from voicebot.dialogue import DialogueAction, ReplyPart

log = logging.getLogger(__name__)


class BookingMachine(SlotFilling, Offers, CancelFlow):
    """One call's booking dialogue: typed state, declared transitions, template replies."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        backend: BookingBackend,
        replies: Replies,
        clock: Clock,
        understand: Understand,
        call_id: str,
        caller_id: str | None = None,
        max_silence_prompts: int = 3,
        on_booked: Callable[[Booking], None] | None = None,
        notify: Notify | None = None,
    ) -> None:
        """One call: `understand` turns caller text into an `Extraction`; `on_booked`
        runs once the backend committed a booking."""
        self.catalog = catalog
        self.backend = backend
        self.availability = backend  # check / free_starts / nearest
        self.notify = notify
        self.r = replies
        self.clock = clock
        self.understand = understand
        self.call_id = call_id
        self.caller_id = normalize_phone(caller_id) if caller_id else None
        self.max_silence_prompts = max_silence_prompts
        self.on_booked = on_booked
        self.state = BookingState()
        self.expecting: Expecting = None
        # Who may hear or cancel a booking (booking/privacy/identity.py).
        self.identity = IdentityGate(backend, self.caller_id)
        self._text = ""  # the caller's words this turn (a booking code is matched in it)

    # ------------------------------------------------------------------ entry points

    async def greet(self) -> list[ReplyPart]:
        """The greeting; the caller id, if any, pre-fills the phone."""
        self._goto(Phase.COLLECTING, "greet")
        if self.caller_id and self.state.slots.phone is None:
            self.state.slots.phone = self.caller_id
            self.state.slots.phone_from_caller_id = True
        return [self._prompt(self.r("greeting", salon=self.catalog.salon.name), "service")]

    async def silence(self, count: int) -> list[ReplyPart]:
        """The caller said nothing for the `count`-th time: reprompt, or hang up."""
        if self.state.phase not in ACTIVE_PHASES:
            return []
        self.state.silence_count = count
        if count >= self.max_silence_prompts:
            self._goto(Phase.ENDED, "silence")
            if self.state.outcome == "no_booking":
                self.state.outcome = "hangup"
            return [self.r("silence_hangup"), DialogueAction("hangup", {"reason": "silence"})]
        parts: list[ReplyPart] = [self.r("silence_reprompt")]
        if self.state.last_prompt:
            parts.append(self.state.last_prompt)
        return parts

    async def reply(self, text: str) -> list[ReplyPart]:
        """The bot's reply parts (text and actions) to one caller utterance."""
        if self.state.phase not in ACTIVE_PHASES:
            return []
        self.state.turns += 1
        self.state.silence_count = 0
        self._text = text
        ex = await self.understand(text, self.expecting)
        try:
            return await self._handle(ex)
        except StoreError:
            # The booking system (the store, or the salon's CRM: down, licence expired)
            # cannot answer availability or lookups: a person can, so hand over politely.
            log.exception("booking backend failed (call %s)", self.call_id)
            return self._backend_down()

    def _backend_down(self) -> list[ReplyPart]:
        st = self.state
        self._goto(Phase.TRANSFER, "backend_error")
        st.outcome = "transfer"
        return [
            self.r("backend_down"),
            DialogueAction("transfer", {"reason": "backend_error", **st.slots.to_json()}),
            DialogueAction("hangup", {"reason": "transfer"}),
        ]

    # ------------------------------------------------------------------ turn logic

    async def _handle(self, ex: Extraction) -> list[ReplyPart]:
        st = self.state
        if "human" in ex.intents:
            self._goto(Phase.TRANSFER, "human")
            st.outcome = "transfer"
            return [
                self.r("transfer"),
                DialogueAction("transfer", {"reason": "caller_request", **st.slots.to_json()}),
                DialogueAction("hangup", {"reason": "transfer"}),
            ]
        if "goodbye" in ex.intents and not ex.has_slots:
            self._goto(Phase.ENDED, "goodbye")
            return [self.r("goodbye"), DialogueAction("hangup", {"reason": "goodbye"})]
        if "cancel_booking" in ex.intents:
            if st.phase != Phase.CANCEL_FLOW:
                self._goto(Phase.CANCEL_FLOW, "cancel_request")
            st.cancel_candidates = []
            return await self._cancel_start(ex)
        if "restart" in ex.intents and not ex.has_slots:
            self._goto(Phase.COLLECTING, "restart")
            keep_phone = self.caller_id
            st.slots = type(st.slots)()
            if keep_phone:
                st.slots.phone, st.slots.phone_from_caller_id = keep_phone, True
            st.offers, st.part_of_day, st.announced_master = [], None, None
            return [self.r("restart"), *(await self._advance())]

        parts: list[ReplyPart] = self._answers(ex)
        # A free question is answered by the dialogue (booking.faq) before these parts.
        answered = bool(parts) or "free_question" in ex.intents
        if st.phase == Phase.CANCEL_FLOW:
            return parts + await self._cancel_turn(ex)
        if st.phase == Phase.OFFERING:
            return parts + await self._offering_turn(ex, answered=answered)
        if st.phase == Phase.CONFIRMING:
            return parts + await self._confirming_turn(ex, answered=answered)
        s = st.slots
        before = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        changed, notes = self._apply(ex)
        parts += notes
        if not changed and not parts and not ex.resolved:
            parts.append(self.r("not_understood"))
            if self.expecting in {"date", "time"}:
                self._missed(self.expecting)
        nxt = await self._advance(list_free="free_times" in ex.intents)
        if self.state.phase == Phase.CONFIRMING or not changed:
            return parts + nxt
        return [*parts, *self._with_ack(before, nxt)]

    def _known_phone(self) -> str | None:
        return self.state.slots.phone or self.caller_id

    async def _advance(self, *, list_free: bool = False) -> list[ReplyPart]:
        """Ask for the next missing slot, or check availability, or read back."""
        st, s = self.state, self.state.slots
        if s.service is None:
            return self._ask(self.r("ask_service", services=self._service_list()), "service")
        if s.date is None:
            return self._ask(self._choices_for("date") or self.r("ask_date"), "date")
        if s.time is None:
            if (waiting := self._waiting_question()) is not None:
                return waiting
            if st.part_of_day or list_free or st.misses.get("time", 0) >= 2:
                st.misses["time"] = 0
                return await self._offer_part_of_day(st.part_of_day)
            return self._ask(self.r("ask_time"), "time")
        start = local_dt(self.catalog, s.date, s.time)
        master, problem = await self.availability.check(
            s.service, start, self.now(), s.master_request
        )
        if problem == "past":
            s.time = None
            if s.date < self.today():
                s.date = None
            return self._ask(self.r("past_time"), "time")
        if problem == "closed":
            svc = self.catalog.service(s.service)
            hours = self.catalog.salon.hours
            s.time = None
            text = self.r(
                "closed",
                open=fmt_time(hours.open),
                close=fmt_time(hours.close),
                service=svc.name.lower(),
                duration=svc.duration_min,
            )
            return self._ask(text, "time")
        if problem is not None or master is None:
            return await self._offer_alternatives(start, race=False)
        parts: list[ReplyPart] = []
        s.master = master
        if s.master_request is None and st.announced_master != master:
            st.announced_master = master
            parts.append(self.r("master_assigned", master=master))
        if s.name is None:
            return [*parts, *self._ask(self.r("ask_name"), "name")]
        if s.phone is None:
            waiting = self._waiting_question()
            return [*parts, *(waiting or self._ask(self.r("ask_phone"), "phone"))]
        self._goto(Phase.CONFIRMING, "complete")
        return [*parts, self._prompt(self._readback(), "confirm")]

    def _readback(self) -> str:
        s = self.state.slots
        assert s.service and s.master and s.date and s.time and s.name and s.phone
        return self.r(
            "readback",
            service=service_acc(self.catalog.service(s.service).name),
            master=master_dat(s.master),
            date=fmt_date(s.date, self.today()),
            time=fmt_time(s.time),
            name=s.name,
            phone=self.r.phone(s.phone),
        )

    def _booked(self, booking: Booking) -> None:
        """The store committed: from here on the booking exists, whatever happens next."""
        log.info("booked %s for %s (call %s)", booking.id, mask_phone(booking.phone), self.call_id)
        self.state.booking = booking
        self.state.outcome = "booked"
        self._goto(Phase.BOOKED, "yes")
        if self.on_booked is not None:
            self.on_booked(booking)

    async def _confirming_turn(self, ex: Extraction, *, answered: bool) -> list[ReplyPart]:
        st = self.state
        changed, notes = self._apply(ex)
        if changed or notes:
            return [*notes, *(await self._advance())]
        if ex.answer == "yes":
            return await self._book()
        if ex.answer == "no":
            self._goto(Phase.COLLECTING, "no")
            return [self._prompt(self.r("what_to_fix"), None)]
        if answered:
            return [self.state.last_prompt]
        s = st.slots
        assert s.service and s.date and s.time
        return [
            self.r(
                "readback_repeat",
                service=service_acc(self.catalog.service(s.service).name),
                date=fmt_date(s.date, self.today()),
                time=fmt_time(s.time),
            )
        ]

    async def _book(self) -> list[ReplyPart]:
        st, s = self.state, self.state.slots
        assert s.service and s.master and s.date and s.time and s.name and s.phone
        start = local_dt(self.catalog, s.date, s.time)
        end = start + timedelta(minutes=self.catalog.service(s.service).duration_min)
        new = NewBooking(
            service=s.service,
            master=s.master,
            start=start,
            end=end,
            name=s.name,
            phone=s.phone,
            call_id=self.call_id,
        )
        commit = asyncio.ensure_future(self.backend.create(new, notify=self._notes("booked", new)))
        try:
            booking = await asyncio.shield(commit)
        except asyncio.CancelledError:
            # The turn was cancelled mid-commit (a newer input, barge-in, hang-up). The
            # commit finishes regardless; record it so the call record, the webhook and
            # the next turn know the slot is booked, then let the cancellation go on.
            with contextlib.suppress(Exception):
                self._booked(await commit)
                booking_outcome("created")
            raise
        except SlotTaken:
            booking_outcome("conflict")
            return await self._offer_alternatives(start, race=True)
        except InvalidPhone:
            # The CRM refused the number (YCLIENTS 431): ask for it again, nothing booked.
            s.phone, s.phone_from_caller_id = None, False
            self._goto(Phase.COLLECTING, "bad_phone")
            return [self._prompt(self.r("phone_rejected"), "phone")]
        except Exception:
            booking_outcome("failed")
            log.exception("booking store failed (call %s)", self.call_id)
            self._goto(Phase.TRANSFER, "store_error")
            st.outcome = "transfer"
            return [
                self.r("booking_failed"),
                DialogueAction("transfer", {"reason": "store_error", **s.to_json()}),
                DialogueAction("hangup", {"reason": "transfer"}),
            ]
        booking_outcome("created")
        self._booked(booking)
        text = self.r(
            "booked",
            service=service_acc(self.catalog.service(booking.service).name),
            master=master_dat(booking.master),
            date=fmt_date(booking.start.date(), self.today()),
            time=fmt_time(booking.start),
            id=booking.id,
        )
        self._goto(Phase.ENDED, "goodbye")
        return [
            DialogueAction("booking", self._booking_json(booking)),
            text,
            DialogueAction("hangup", {"reason": "booked"}),
        ]


__all__ = ["TRANSITIONS", "BookingMachine", "TransitionError", "Understand"]
