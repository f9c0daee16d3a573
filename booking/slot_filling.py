"""Taking what the caller said into the slots, and saying what was not understood.

The coverage rule lives here: a turn whose date/time words could not all be placed
(`Extraction.unplaced`) fills no date or time from a fragment of them; the bot asks a
short, specific question instead, and after two failed tries at the same slot offers
concrete choices. An hour that fits both halves of the salon's day is asked about
(«Вы имеете в виду 08:00 или 20:00?»). Every slot taken is acknowledged when the bot goes
on asking («Записала: Марина.»), so a caller never hears the same question without
knowing what was heard.
"""

from __future__ import annotations

from datetime import time, timedelta

from booking.extract import Extraction
from booking.extract.phone import apply_fix, group_digits, join_fragments
from booking.machine_base import MachineBase
from booking.replies import WEEKDAYS_ACC, fmt_date, fmt_time, join_ru, master_dat, service_acc
from voicebot.dialogue import ReplyPart

_DATE_STEMS = ("январ", "феврал", "март", "апрел", "мая", "май", "июн", "июл", "август", "сентябр")
_DATE_STEMS += ("октябр", "ноябр", "декабр", "понедельн", "вторн", "сред", "четверг", "пятниц")
_DATE_STEMS += ("суббот", "воскрес", "недел", "завтра", "сегодня", "числ")


class SlotFilling(MachineBase):
    """Slot merging, mid-flow answers, clarifications and acknowledgements."""

    def _answers(self, ex: Extraction) -> list[ReplyPart]:
        """Answers to questions asked in passing; the flow then continues."""
        out: list[ReplyPart] = []
        hours = self.catalog.salon.hours
        if "price" in ex.intents:
            sid = ex.service or self.state.slots.service
            if ex.service or (sid and self.expecting == "confirm"):
                s = self.catalog.service(sid)  # type: ignore[arg-type]
                out.append(self.r("price_one", service=s.name, price=s.price))
            else:
                prices = ", ".join(f"{s.name} — {s.price} рублей" for s in self.catalog.services)
                out.append(self.r("price_all", prices=prices))
        if "duration" in ex.intents:
            sid = ex.service or self.state.slots.service
            for svc in [self.catalog.service(sid)] if sid else self.catalog.services:
                out.append(self.r("duration", service=svc.name, minutes=svc.duration_min))
        if "hours" in ex.intents:
            out.append(self.r("hours", open=fmt_time(hours.open), close=fmt_time(hours.close)))
        if "address" in ex.intents:
            out.append(self.r("address", address=self.catalog.salon.address))
        if "services" in ex.intents:
            out.append(self.r("services", services=self._service_list()))
        if "masters" in ex.intents:
            day = ex.date or self.state.slots.date
            names = join_ru([m.name for m in self.catalog.masters]).replace(" или ", " и ")
            label = fmt_date(day, self.today()).capitalize() + "," if day else "Каждый день"
            out.append(self.r("masters_day", date=label, masters=names))
        return out

    def _take_phone(self, ex: Extraction, notes: list[ReplyPart]) -> None:
        st, s = self.state, self.state.slots
        if ex.phone:
            s.phone, s.phone_from_caller_id, st.phone_buffer = ex.phone, False, ""
        elif ex.phone_part is not None:
            if ex.phone_restart:
                st.phone_buffer = ""
            joined = join_fragments(st.phone_buffer, ex.phone_part)
            if joined is not None:
                s.phone, s.phone_from_caller_id, st.phone_buffer = joined, False, ""
                return
            buf = st.phone_buffer + (
                ex.phone_part.lstrip("+") if st.phone_buffer else ex.phone_part
            )
            if len(buf.lstrip("+")) >= 11:
                st.phone_buffer = ""
                notes.append(self.r("phone_bad"))
            else:
                st.phone_buffer = buf
        elif ex.phone_fix is not None:
            fixed = apply_fix(s.phone, *ex.phone_fix) if s.phone else None
            if fixed is not None:
                s.phone, s.phone_from_caller_id = fixed, False
            else:
                notes.append(self.r("phone_fix_unknown", digits=ex.phone_fix[0]))

    def _take_time(self, ex: Extraction) -> None:
        st, s = self.state, self.state.slots
        if ex.time:
            s.time, st.part_of_day, st.time_options, st.after = ex.time, None, (), None
        elif (
            st.time_options
            and ex.choice is not None
            and -len(st.time_options) <= ex.choice < len(st.time_options)
        ):
            s.time, st.time_options = st.time_options[ex.choice], ()  # «первое», «второй»
        elif st.time_options and ex.part_of_day:
            # «в 8» → «Вы имеете в виду 08:00 или 20:00?» → «вечера»
            pm = ex.part_of_day in {"afternoon", "evening", "night"}
            pick = [t for t in st.time_options if (t.hour >= 12) == pm]
            if len(pick) == 1:
                s.time, st.part_of_day, st.time_options = pick[0], None, ()
        elif ex.time_options:
            s.time, st.time_options = None, ex.time_options
        elif ex.after is not None:
            s.time, st.part_of_day, st.after = None, "after", ex.after
        elif ex.part_of_day:
            s.time, st.part_of_day = None, ex.part_of_day

    def _apply(self, ex: Extraction) -> tuple[bool, list[ReplyPart]]:
        """Merge validated slot values into the state; returns (changed, notes to say)."""
        st, s = self.state, self.state.slots
        notes: list[ReplyPart] = []
        before = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        before_wait = (st.time_options, st.after, st.phone_buffer, st.part_of_day)
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
        elif ex.master_unknown:
            names = join_ru([m.name for m in self.catalog.masters]).replace(" или ", " и ")
            notes.append(self.r("master_unknown", name=ex.master_unknown, masters=names))
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
        if ex.unplaced:
            # The coverage rule: no date or time from a fragment of what was said.
            notes.append(self._unplaced_question(ex))
        if not ex.unplaced or ex.only_date_unsure:
            if ex.date and not ex.unplaced:
                if ex.date < self.today():
                    notes.append(self.r("past_date"))
                else:
                    s.date = ex.date
            self._take_time(ex)
        if ex.name:
            s.name = ex.name
        elif ex.name_like and (
            s.name is None or (self.expecting == "confirm" and ex.answer == "no")
        ):
            # acknowledged («Записала: Светлана») and read back; «Нет, Светлана» fixes it
            s.name = ex.name_like
        self._take_phone(ex, notes)
        after = (s.service, s.master_request, s.date, s.time, s.name, s.phone)
        changed = before != after or (ex.part_of_day is not None and ex.time is None)
        changed = changed or before_wait != (
            st.time_options,
            st.after,
            st.phone_buffer,
            st.part_of_day,
        )
        if before != after:
            s.master = None  # the free master is decided again
        if ex.unplaced:
            self._missed("date" if ex.only_date_unsure or s.date is None else "time")
        return changed, notes

    def _unplaced_question(self, ex: Extraction) -> str:
        words = ex.unplaced
        said = " ".join(words)
        s = self.state.slots
        datey = ex.only_date_unsure or (
            s.date is None and any(stem in w.lower() for w in words for stem in _DATE_STEMS)
        )
        if datey:
            return self.r("unclear_date", said=said)
        return self.r("unclear_time", said=said)

    def _missed(self, slot: str) -> int:
        n = self.state.misses.get(slot, 0) + 1
        self.state.misses[slot] = n
        return n

    def _with_ack(self, before: tuple[object, ...], parts: list[ReplyPart]) -> list[ReplyPart]:
        """`parts` with the acknowledgement in front of the first spoken part (one
        sentence more, not one reply more)."""
        ack = self._ack(before)
        if not ack:
            return parts
        for i, p in enumerate(parts):
            if isinstance(p, str):
                return [*parts[:i], f"{ack[0]} {p}", *parts[i + 1 :]]
        return [*ack, *parts]

    def _ack(self, before: tuple[object, ...]) -> list[ReplyPart]:
        """«Записала: Марина, телефон +7 916 …» for slots this turn filled."""
        s = self.state.slots
        items: list[str] = []
        if s.service and s.service != before[0]:
            items.append(self.catalog.service(s.service).name.lower())
        if s.master_request and s.master_request != before[1]:
            items.append(f"к мастеру {master_dat(s.master_request)}")
        if s.date and s.date != before[2]:
            items.append(fmt_date(s.date, self.today()))
        if s.time and s.time != before[3]:
            items.append(f"в {fmt_time(s.time)}")
        if s.name and s.name != before[4]:
            items.append(s.name)
        if s.phone and s.phone != before[5] and not s.phone_from_caller_id:
            items.append(f"телефон {self.r.phone(s.phone)}")
        return [self.r("ack", items=", ".join(items))] if items else []

    def _waiting_question(self) -> list[ReplyPart] | None:
        """The question a half-understood slot needs, before the usual next question."""
        st = self.state
        if st.time_options and st.slots.time is None:
            h = self.catalog.salon.hours
            if not any(h.open <= t < h.close for t in st.time_options):
                # «в 10» in a salon open 12–20: neither 10:00 nor 22:00; say the hours
                st.time_options = ()
                text = self.r("outside_hours", open=fmt_time(h.open), close=fmt_time(h.close))
                return self._ask(text, "time")
            opts = join_ru([fmt_time(t) for t in st.time_options])
            return self._ask(self.r("which_half", options=opts), "choice")
        if st.phone_buffer and st.slots.phone is None:
            return self._ask(
                self.r("phone_continue", digits=group_digits(st.phone_buffer)), "phone"
            )
        return None

    def _choices_for(self, slot: str) -> str | None:
        """Concrete choices after two failed tries at `slot` (dates; times are offered
        from the free grid by the caller of this)."""
        if slot != "date" or self.state.misses.get("date", 0) < 2:
            return None
        today = self.today()
        days = [today + timedelta(days=1), today + timedelta(days=2), today + timedelta(days=3)]
        names = ["завтра", "послезавтра", WEEKDAYS_ACC[days[2].weekday()]]
        return self.r("offer_dates", options=join_ru(names))


def window(part: str | None, after: time | None, close: time) -> tuple[time, time]:
    """The [from, to) times a part of the day («вечером», «после шести») covers."""
    if part == "after" and after is not None:
        return after, close
    return {
        "morning": (time(0), time(12)),
        "afternoon": (time(13), time(17)),
        "evening": (time(17), time(23, 59)),
        "night": (time(18), time(23, 59)),
    }.get(part or "", (time(0), time(23, 59)))
