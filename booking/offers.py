"""Offering concrete times: free times in a part of the day, or the nearest free
alternatives when the wanted time is taken, and the caller's pick among them."""

from __future__ import annotations

from datetime import datetime, time

from booking.availability import Option, spread, unique_times
from booking.extract import Extraction
from booking.machine_base import MachineBase
from booking.replies import fmt_date, fmt_option, fmt_time, join_ru
from booking.slot_filling import window
from booking.state import Phase
from voicebot.dialogue import ReplyPart


class Offers(MachineBase):
    """The offering phase (`Phase.OFFERING`) of the booking machine."""

    async def _offer_part_of_day(self, part: str | None) -> list[ReplyPart]:
        s = self.state.slots
        assert s.service and s.date
        after = self.state.after
        lo, hi = window(part, after, time(23, 59))
        free = await self.availability.free_starts(s.service, s.date, self.now(), s.master_request)
        opts = [o for o in unique_times(free) if lo <= o.start.time() < hi]
        opts = spread(opts, 3)
        day = fmt_date(s.date, self.today()).capitalize()
        label = self.r.part_name(part) if part else ""
        if part == "after" and after is not None:
            label = f"после {fmt_time(after)}"
        if not opts:
            self.state.part_of_day, self.state.after = None, None
            text = self.r("no_free_part_of_day", part=label, date=day).replace(",  ", ", ")
            return self._ask(text, "time")
        self.state.offers = opts
        self._goto(Phase.OFFERING, "vague_time")
        times = join_ru([fmt_time(o.start) for o in opts])
        text = self.r("offer_part_of_day", part=label, date=day, options=times)
        text = text.replace(",  ", ", ")
        return [self._prompt(text, "choice")]

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
            st.part_of_day, st.offers, st.after, st.time_options = None, [], None, ()
            before = (s.service, s.master_request, s.date, None, s.name, s.phone)
            if ex.name:
                s.name = ex.name
            if ex.phone:
                s.phone, s.phone_from_caller_id = ex.phone, False
            if ex.service:
                s.service = ex.service
            nxt = await self._advance()
            if self.state.phase == Phase.CONFIRMING:
                return nxt
            return self._with_ack(before, nxt)
        if ex.answer == "no" and not ex.has_slots and ex.part_of_day is None:
            s.time = None
            st.offers = []
            self._goto(Phase.COLLECTING, "declined")
            return [self._prompt(self.r("ask_time"), "time")]
        before = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        changed, notes = self._apply(ex)
        when = (s.service, s.master_request, s.date, s.time)
        if changed and when == before[:4] and not notes and "free_times" not in ex.intents:
            # Only the name or phone came: take it, and the offer still stands.
            return self._with_ack(before, [self.state.last_prompt])
        if changed:
            st.offers = []
            return notes + await self._advance(list_free="free_times" in ex.intents)
        if notes or answered:
            return [*notes, self.state.last_prompt]
        return [self.r("not_understood"), self.state.last_prompt]
