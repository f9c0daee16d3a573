"""Phone numbers («+7 916 123-45-67», «8 916 1234567», «916 123 45 67») → E.164."""

from __future__ import annotations

import re

import phonenumbers

from voicebot.redact import mask_number

_CANDIDATE = re.compile(r"(?:\+\s*)?\d[\d\s\-()]{8,}\d")


def parse_phone(text: str, region: str = "RU") -> tuple[str, tuple[int, int]] | None:
    """The last valid phone number in `text` with its span, in E.164."""
    found: tuple[str, tuple[int, int]] | None = None
    for m in _CANDIDATE.finditer(text):
        raw = m.group()
        try:
            num = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            found = (phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), m.span())
    return found


def normalize_phone(raw: str | None, region: str = "RU") -> str | None:
    """E.164 for a number from any source (caller id, LLM output), or None if invalid."""
    if not raw:
        return None
    parsed = parse_phone(raw, region)
    return parsed[0] if parsed else None


def format_phone(e164: str) -> str:
    """For reading back: «+7 916 123-45-67»."""
    digits = e164.lstrip("+")
    if e164.startswith("+7") and len(digits) == 11:
        d = digits[1:]
        return f"+7 {d[0:3]} {d[3:6]}-{d[6:8]}-{d[8:10]}"
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def mask_phone(e164: str | None) -> str:
    """For logs: keep only the last two digits."""
    return mask_number(e164)
