"""Who may hear or cancel a booking found by phone number.

Anyone can say a phone number, so a number alone proves nothing. A booking's details
are read out, and its cancellation accepted, only with one of these proofs:

- the telephony caller id is the booking's phone;
- the caller says the booking code (the bot read it out when booking: «Номер записи …»);
- the caller says the name on the booking, for the phone they gave.

Without proof the caller hears the same words whether or not the number has bookings
(no oracle for "is X a client here"), the salon is asked to call the booking's number
back, and a note goes into the call record (`notes`) for the salon's page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from booking.models import Booking
from voicebot.redact import mask_number

# Cyrillic letters that look or sound like the Latin ones in booking codes (speech
# recognition writes «К7М2QХ» as often as «K7M2QX»).
_LOOKALIKE = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")
_CODE_CHARS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # booking.models._ID_ALPHABET
_RUN = re.compile(f"[{_CODE_CHARS}]{{6,}}")
MAX_CODE_LOOKUPS = 20


class BookingLookup(Protocol):
    """What the gate needs of the booking backend (booking.backends.base)."""

    async def get(self, booking_id: str) -> Booking | None:
        """One booking by id, any status; None when unknown."""
        ...


def code_candidates(text: str) -> list[str]:
    """Booking codes the caller may have said, first 20: every 6-character window of
    code characters, separators removed («K7M 2QX», «к-7-м-2-q-х» → «K7M2QX»), and
    whole numbers of 4-12 digits (YCLIENTS record ids are numbers: «номер 4815162»)."""
    compact = re.sub(r"[\s\-.,:;]", "", text.upper().translate(_LOOKALIKE))
    out: list[str] = []
    for run in _RUN.findall(compact):
        out += [run[i : i + 6] for i in range(len(run) - 5)]
    out += re.findall(r"(?<!\d)\d{4,12}(?!\d)", compact)
    return list(dict.fromkeys(out))[:MAX_CODE_LOOKUPS]


def _first_name(name: str) -> str:
    words = name.casefold().replace("ё", "е").split()
    return words[0] if words else ""


def name_matches(said: str | None, booking: Booking) -> bool:
    """The caller's name (as extracted, nominative) is the booking's first name."""
    return bool(said and booking.name) and _first_name(said) == _first_name(booking.name)


@dataclass(slots=True)
class ProofState:
    """The identity check's part of a call's state (kept in `BookingState.proof`, so a
    copy of the state — the engine's speculative sandbox — copies it too).

    `pending`: bookings found for a phone the caller has not proven yet (None: not
    waiting for a proof); `phone`: that phone; `notes`: refusals for the call record.
    """

    pending: list[Booking] | None = None
    phone: str | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IdentityGate:
    """The proofs of one call: the caller id it came with and where codes are looked up.
    Stateless: what is waiting for a proof lives in the call's `ProofState`."""

    store: BookingLookup
    caller_id: str | None

    def owns(self, phone: str | None) -> bool:
        """The caller id is this phone (the network vouches for it)."""
        return bool(phone and self.caller_id and phone == self.caller_id)

    @staticmethod
    def wait_for_proof(proof: ProofState, phone: str, found: Sequence[Booking]) -> None:
        """Remember what was found for an unproven phone until the caller proves it."""
        proof.pending, proof.phone = list(found), phone

    async def by_code(
        self, text: str, now: datetime, pending: Sequence[Booking] = ()
    ) -> list[Booking]:
        """Active future bookings whose code the caller said: any of `pending` (found by
        the phone the caller gave), or, looked up alone, a code with a letter in it.
        A bare number alone proves nothing: «15:00» or a phone said aloud must never
        open some other client's booking whose id happens to be that number."""
        codes = code_candidates(text)
        hit = [b for b in pending if b.id in codes]
        if hit:
            return hit
        found: list[Booking] = []
        for code in (c for c in codes if not c.isdigit()):
            b = await self.store.get(code)
            if b is not None and b.status == "active" and b.end > now:
                found.append(b)
        return found

    async def prove(
        self, proof: ProofState, text: str, name: str | None, now: datetime
    ) -> list[Booking]:
        """The pending bookings the caller's answer proves (by code or by name); clears
        the pending state either way."""
        pending, proof.pending = proof.pending or [], None
        by_code = await self.by_code(text, now, pending)
        if by_code:
            return by_code
        return [b for b in pending if name_matches(name, b)]

    @staticmethod
    def refuse(proof: ProofState, now: datetime, booking_ids: Sequence[str] = ()) -> None:
        """Note an unproven request: the salon should call the booking's number back
        (`booking_ids`: the bookings found for it, linked from the salon's page)."""
        proof.notes.append(
            {
                "kind": "identity_not_proven",
                "at": now.isoformat(timespec="seconds"),
                "phone": proof.phone,
                "booking_ids": list(booking_ids),
                "action": "call_back",
                "text": "Не подтвердил личность для записи на номер "
                f"{mask_number(proof.phone)}: перезвонить на номер из записи.",
            }
        )
        proof.phone = None
