"""YCLIENTS answers mapped to the backend errors the dialogue understands.

433/436/437 → `SlotTaken` (offer alternatives); 431 → `InvalidPhone` (ask again);
432 → `BackendConfigError` (the salon requires an SMS code: the bot cannot book, fix the
account); 401/403 auth and 404 company → `BackendConfigError`; 402 (licence expired),
other 4xx, 5xx and transport errors → `BackendUnavailable` (polite handoff).
"""

from __future__ import annotations

from booking.backends.base import BackendConfigError, BackendUnavailable, InvalidPhone
from booking.models import SlotTaken, StoreError
from booking.yclients import wire

SMS_CODE_HELP = (
    "YCLIENTS requires an SMS confirmation code for online bookings (error 432); a voice "
    "bot cannot supply one. Turn off SMS confirmation in the online booking form settings "
    "of this company, or keep booking.backend: local."
)


def map_error(e: wire.YclientsError) -> StoreError:
    """The backend exception for an API error."""
    if e.code in wire.SLOT_TAKEN_CODES:
        return SlotTaken(f"YCLIENTS {e.code}: {e.message}")
    if e.code == wire.BAD_PHONE:
        return InvalidPhone(f"YCLIENTS 431: {e.message}")
    if e.code == wire.SMS_CODE_REQUIRED:
        return BackendConfigError(SMS_CODE_HELP)
    if e.status in (401, 403) and e.code == 0:
        return BackendConfigError(
            f"YCLIENTS refused the tokens (HTTP {e.status}): check YCLIENTS_PARTNER_TOKEN "
            "and YCLIENTS_USER_TOKEN and the user's rights in this company"
        )
    if e.status == 402:
        return BackendUnavailable("YCLIENTS: the salon's licence has expired (HTTP 402)")
    return BackendUnavailable(str(e))
