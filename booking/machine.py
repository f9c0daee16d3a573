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
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta

from booking.availability import Option, local_dt, spread, unique_times
from booking.backends.base import BookingBackend, InvalidPhone
from booking.cancel_flow import CancelFlow
from booking.catalog import Catalog
from booking.extract import Expecting, Extraction
from booking.extract.phone import mask_phone, normalize_phone
from booking.models import Booking, NewBooking, SlotTaken
from booking.notify.message import Notify
from booking.replies import (
    Replies,
    fmt_date,
    fmt_option,
    fmt_time,
    join_ru,
    master_dat,
    service_acc,
)
from booking.state import ACTIVE_PHASES, BookingState, Phase
from booking.transitions import TRANSITIONS, TransitionError, allowed
from voicebot.clock import Clock
from voicebot.dialogue import DialogueAction, ReplyPart

log = logging.getLogger(__name__)

Understand = Callable[[str, Expecting], Awaitable[Extraction]]


class BookingMachine(CancelFlow):
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

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        return self.clock.now().astimezone(self.catalog.salon.tz)

    def today(self) -> date:
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

    # ------------------------------------------------------------------ entry points

    async def greet(self) -> list[ReplyPart]:
        self._goto(Phase.COLLECTING, "greet")
        if self.caller_id and self.state.slots.phone is None:
            self.state.slots.phone = self.caller_id
            self.state.slots.phone_from_caller_id = True
        return [self._prompt(self.r("greeting", salon=self.catalog.salon.name), "service")]

    async def silence(self, count: int) -> list[ReplyPart]:
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
        if self.state.phase not in ACTIVE_PHASES:
            return []
        self.state.turns += 1
        self.state.silence_count = 0
        ex = await self.understand(text, self.expecting)
        return await self._handle(ex)

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
            return await self._cancel_lookup(ex.phone or st.cancel_phone or self._known_phone())
        if "restart" in ex.intents and not ex.has_slots:
            self._goto(Phase.COLLECTING, "restart")
            keep_phone = self.caller_id
            st.slots = type(st.slots)()
            if keep_phone:
                st.slots.phone, st.slots.phone_from_caller_id = keep_phone, True
            st.offers, st.part_of_day, st.announced_master = [], None, None
            return [self.r("restart"), *(await self._advance())]

        parts: list[ReplyPart] = self._answers(ex)
        if st.phase == Phase.CANCEL_FLOW:
            return parts + await self._cancel_turn(ex)
        if st.phase == Phase.OFFERING:
            return parts + await self._offering_turn(ex, answered=bool(parts))
        if st.phase == Phase.CONFIRMING:
            return parts + await self._confirming_turn(ex, answered=bool(parts))
        changed, notes = self._apply(ex)
        parts += notes
        if not changed and not parts and not ex.resolved:
            parts.append(self.r("not_understood"))
        return parts + await self._advance(list_free="free_times" in ex.intents)

    def _known_phone(self) -> str | None:
        return self.state.slots.phone or self.caller_id

    def _answers(self, ex: Extraction) -> list[ReplyPart]:
        """Answers to questions asked in passing; the flow then continues."""
        out: list[ReplyPart] = []
        hours = self.catalog.salon.hours
        if "price" in ex.intents:
            sid = ex.service  # named in the question; otherwise the whole price list
            if sid:
                s = self.catalog.service(sid)
                out.append(self.r("price_one", service=s.name, price=s.price))
            else:
                prices = ", ".join(f"{s.name} — {s.price} рублей" for s in self.catalog.services)
                out.append(self.r("price_all", prices=prices))
        if "hours" in ex.intents:
            out.append(self.r("hours", open=fmt_time(hours.open), close=fmt_time(hours.close)))
        if "address" in ex.intents:
            out.append(self.r("address", address=self.catalog.salon.address))
        if "services" in ex.intents:
            out.append(self.r("services", services=self._service_list()))
        return out

    def _apply(self, ex: Extraction) -> tuple[bool, list[ReplyPart]]:
        """Merge validated slot values into the state; returns (changed, notes to say)."""
        s = self.state.slots
        notes: list[ReplyPart] = []
        before = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        if ex.service:
            s.service = ex.service
        elif ex.service_unknown and not s.service:
            notes.append(
                self.r("unknown_service", what=ex.service_unknown, services=self._service_list())
            )
        if ex.master:
            s.master_request = ex.master
        elif ex.master_any:
            s.master_request = None
        if s.master_request and s.service:
            if not self.catalog.masters_for(s.service, s.master_request):
                notes.append(
                    self.r(
                        "master_cannot",
                        master=s.master_request,
                        service=service_acc(self.catalog.service(s.service).name),
                    )
                )
                s.master_request = None
        if ex.date:
            if ex.date < self.today():
                notes.append(self.r("past_date"))
            else:
                s.date = ex.date
        if ex.time:
            s.time = ex.time
            self.state.part_of_day = None
        elif ex.part_of_day:
            s.time = None
            self.state.part_of_day = ex.part_of_day
        if ex.name:
            s.name = ex.name
        if ex.phone:
            s.phone, s.phone_from_caller_id = ex.phone, False
        after = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        changed = before != after or (ex.part_of_day is not None and ex.time is None)
        if changed:
            s.master = None  # the free master is decided again
        return changed, notes

    async def _advance(self, *, list_free: bool = False) -> list[ReplyPart]:
        """Ask for the next missing slot, or check availability, or read back."""
        st, s = self.state, self.state.slots
        if s.service is None:
            return self._ask(self.r("ask_service", services=self._service_list()), "service")
        if s.date is None:
            return self._ask(self.r("ask_date"), "date")
        if s.time is None:
            if st.part_of_day or list_free:
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
            return [*parts, *self._ask(self.r("ask_phone"), "phone")]
        self._goto(Phase.CONFIRMING, "complete")
        return [*parts, self._prompt(self._readback(), "confirm")]

    def _ask(self, text: str, expecting: Expecting) -> list[ReplyPart]:
        """Ask for a missing slot: always the collecting phase."""
        self._goto(Phase.COLLECTING, "slot")
        return [self._prompt(text, expecting)]

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

    async def _offer_part_of_day(self, part: str | None) -> list[ReplyPart]:
        s = self.state.slots
        assert s.service and s.date
        windows = {
            "morning": (time(0), time(12)),
            "afternoon": (time(13), time(17)),
            "evening": (time(17), time(23, 59)),
            "night": (time(18), time(23, 59)),
        }
        lo, hi = windows.get(part or "", (time(0), time(23, 59)))
        free = await self.availability.free_starts(s.service, s.date, self.now(), s.master_request)
        opts = [o for o in unique_times(free) if lo <= o.start.time() < hi]
        opts = spread(opts, 3)
        day = fmt_date(s.date, self.today()).capitalize()
        label = self.r.part_name(part) if part else ""
        if not opts:
            self.state.part_of_day = None
            text = self.r("no_free_part_of_day", part=label, date=day).replace(",  ", ", ")
            return self._ask(text, "time")
        self.state.offers = opts
        self._goto(Phase.OFFERING, "vague_time")
        times = join_ru([fmt_time(o.start) for o in opts])
        text = self.r("offer_part_of_day", part=label, date=day, options=times)
        text = text.replace(",  ", ", ")
        return [self._prompt(text, "choice")]

    def _booked(self, booking: Booking) -> None:
        """The store committed: from here on the booking exists, whatever happens next."""
        log.info("booked %s for %s (call %s)", booking.id, mask_phone(booking.phone), self.call_id)
        self.state.booking = booking
        self.state.outcome = "booked"
        self._goto(Phase.BOOKED, "yes")
        if self.on_booked is not None:
            self.on_booked(booking)

    async def _offer_alternatives(self, wanted: datetime, *, race: bool) -> list[ReplyPart]:
        s = self.state.slots
        assert s.service
        parts: list[ReplyPart] = []
        day = fmt_date(wanted.date(), self.today())
        if race:
            parts.append(self.r("taken_race"))
        elif s.master_request:
            parts.append(
                self.r(
                    "taken_master",
                    date=day.capitalize(),
                    time=fmt_time(wanted),
                    master=s.master_request,
                )
            )
        else:
            parts.append(self.r("taken_any", date=day.capitalize(), time=fmt_time(wanted)))
        opts = await self.availability.nearest(s.service, wanted, self.now(), s.master_request)
        self.state.offers = opts
        self._goto(Phase.OFFERING, "taken")
        if not opts:
            s.time, s.date = None, None
            self._goto(Phase.COLLECTING, "declined")
            return [*parts, self._prompt(self.r("no_alternatives"), "date")]
        options = join_ru([fmt_option(o, self.today(), wanted.date()) for o in opts], sep="; ")
        return [*parts, self._prompt(self.r("offer_alternatives", options=options), "choice")]

    def _pick_offer(self, ex: Extraction) -> Option | None:
        offers = self.state.offers
        if not offers:
            return None
        if ex.choice is not None and -len(offers) <= ex.choice < len(offers):
            return offers[ex.choice]
        if ex.time is not None:
            same_day = [o for o in offers if ex.date is None or o.start.date() == ex.date]
            hits = [o for o in same_day if o.start.time().replace(tzinfo=None) == ex.time]
            if ex.master:
                hits = [o for o in hits if o.master == ex.master] or hits
            return hits[0] if hits else None
        if ex.master and ex.date is None:
            hits = [o for o in offers if o.master == ex.master]
            return hits[0] if hits else None
        if ex.answer == "yes" and not ex.has_slots:
            return offers[0]
        return None

    async def _offering_turn(self, ex: Extraction, *, answered: bool) -> list[ReplyPart]:
        st, s = self.state, self.state.slots
        pick = self._pick_offer(ex)
        if pick is not None:
            s.date, s.time = pick.start.date(), pick.start.time().replace(tzinfo=None)
            s.master_request = pick.master
            st.part_of_day, st.offers = None, []
            if ex.name:
                s.name = ex.name
            if ex.phone:
                s.phone, s.phone_from_caller_id = ex.phone, False
            if ex.service:
                s.service = ex.service
            return await self._advance()
        if ex.answer == "no" and not ex.has_slots and ex.part_of_day is None:
            s.time = None
            st.offers = []
            self._goto(Phase.COLLECTING, "declined")
            return [self._prompt(self.r("ask_time"), "time")]
        changed, notes = self._apply(ex)
        if changed:
            st.offers = []
            return notes + await self._advance(list_free="free_times" in ex.intents)
        if notes or answered:
            return [*notes, self.state.last_prompt]
        return [self.r("not_understood"), self.state.last_prompt]

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
            raise
        except SlotTaken:
            return await self._offer_alternatives(start, race=True)
        except InvalidPhone:
            # The CRM refused the number (YCLIENTS 431): ask for it again, nothing booked.
            s.phone, s.phone_from_caller_id = None, False
            self._goto(Phase.COLLECTING, "bad_phone")
            return [self._prompt(self.r("phone_rejected"), "phone")]
        except Exception:
            log.exception("booking store failed (call %s)", self.call_id)
            self._goto(Phase.TRANSFER, "store_error")
            st.outcome = "transfer"
            return [
                self.r("booking_failed"),
                DialogueAction("transfer", {"reason": "store_error", **s.to_json()}),
                DialogueAction("hangup", {"reason": "transfer"}),
            ]
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
