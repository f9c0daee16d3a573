"""Does a piece of free text mention a given phone number?"""

from __future__ import annotations

import re

import phonenumbers


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone («+79161234567» → «9161234567»);
    the digits after the country code when it does not parse."""
    try:
        return str(phonenumbers.parse(e164).national_number)
    except phonenumbers.NumberParseException:
        return re.sub(r"\D", "", e164)[-10:]


def mentions_phone(text: str | None, e164: str) -> bool:
    """True when `text`, read as digits only, contains the phone's national number
    (catches «+7 916 123-45-67», «8 (916) 1234567», «79161234567», JSON-escaped text)."""
    if not text:
        return False
    needle = national_digits(e164)
    return len(needle) >= 7 and needle in re.sub(r"\D", "", text)
