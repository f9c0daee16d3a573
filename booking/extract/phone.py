"""Phone numbers («+7 916 123-45-67», «8 916 1234567», «916 123 45 67») → E.164."""

from __future__ import annotations

import re

import phonenumbers

from voicebot.redact import mask_number

_TAIL_FIX = re.compile(
    r"\s*[,.]?\s*(?:ой|нет|точнее|вернее|извините)(?:[\s,.!-]+(?:ой|нет|точнее|вернее))*"
    r"[\s,.!-]+(\d[\d\s-]*\d|\d)\s*[.!]?\s*$",
    re.IGNORECASE,
)
_CANDIDATE = re.compile(r"(?:\+\s*)?\d[\d\s\-()]{8,}\d")


def parse_phone(text: str, region: str = "RU") -> tuple[str, tuple[int, int]] | None:
    """The last valid phone number in `text` with its span, in E.164. A self-correction
    right after it («…45-67, ой, не 67, а 76») is applied and its words are in the span."""
    found: tuple[str, tuple[int, int]] | None = None
    for m in _CANDIDATE.finditer(text):
        raw = m.group()
        try:
            num = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            found = (phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), m.span())
    if found is not None and (fix := phone_fix(text[found[1][1] :])) is not None:
        fixed = apply_fix(found[0], fix[0], fix[1])
        if fixed is not None:
            found = (fixed, (found[1][0], found[1][1] + fix[2][1]))
    elif found is not None and (tail := _TAIL_FIX.match(text[found[1][1] :])) is not None:
        # «…45-67, нет, 45-76»: the last digits said again, differently
        new = re.sub(r"\D", "", tail.group(1))
        digits = found[0].lstrip("+")
        if 2 <= len(new) <= 7:
            fixed = normalize_phone("+" + digits[: -len(new)] + new)
            if fixed is not None:
                found = (fixed, (found[1][0], found[1][1] + tail.end()))
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


_FRAGMENT_WORDS = re.compile(
    r"\b(?:телефон|номер|мой|моя|плюс|ой|так|вот|ещё|еще|дальше|продолжаю|это|ну|э+"
    r"|нет|не|заново|сначала|снова|извините|точнее|вернее)\b",
    re.IGNORECASE,
)
_RESTART = re.compile(r"\b(?:нет|не так|заново|сначала|снова|ой|точнее|вернее)\b", re.IGNORECASE)


def restarts_number(text: str, piece: str) -> bool:
    """Whether a piece starts the number over («ой, нет, 8 926»): a correction word, or
    a fresh «8 9..» / «+7 9..» start."""
    bare = piece.lstrip("+")
    fresh = len(bare) >= 4 and bare[0] in "78" and bare[1] == "9"
    return bool(_RESTART.search(text)) or fresh


_FIX = re.compile(r"\bне\s+(\d[\d\s-]*\d|\d)\s*[,.]?\s*а\s+(\d[\d\s-]*\d|\d)", re.IGNORECASE)


def phone_fragment(text: str) -> str | None:
    """The digits of an utterance that is only a piece of a phone number («8 916»,
    «123-45-67», «плюс 7 916»), or None if it says anything else."""
    rest = _FRAGMENT_WORDS.sub(" ", text)
    if re.search(r"[a-zа-яё]", rest, re.IGNORECASE):
        return None
    digits = re.sub(r"\D", "", rest)
    if not digits or len(digits) > 11:
        return None
    if text.strip().startswith("+") or re.match(r"^\s*плюс", text, re.IGNORECASE):
        digits = "+" + digits
    return digits


def join_fragments(buffer: str, piece: str) -> str | None:
    """`buffer` + `piece` as a full number in E.164, or None while incomplete."""
    joined = buffer + piece.lstrip("+") if buffer else piece
    bare = joined.lstrip("+")
    if joined.startswith("+") or len(bare) == 11:
        return normalize_phone(joined if joined.startswith("+") else bare)
    if len(bare) == 10 and bare.startswith("9"):
        return normalize_phone("8" + bare)
    return None


def phone_fix(text: str) -> tuple[str, str, tuple[int, int]] | None:
    """A self-correction of some digits: «не 67, а 76» → ("67", "76", span). Only groups
    of two or more digits of the same length count (a lone «не 4, а 5» is a time)."""
    m = _FIX.search(text)
    if m is None:
        return None
    old, new = re.sub(r"\D", "", m.group(1)), re.sub(r"\D", "", m.group(2))
    if len(old) < 2 or len(old) != len(new):
        return None
    return old, new, m.span()


def apply_fix(e164: str, old: str, new: str) -> str | None:
    """The number with the last `old` digit group replaced by `new`, if it is in it;
    an empty `old` replaces as many last digits as `new` has."""
    digits = e164.lstrip("+")
    if not old:
        return normalize_phone("+" + digits[: -len(new)] + new) if len(new) < len(digits) else None
    at = digits.rfind(old, 1)
    if at < 0:
        return None
    return normalize_phone("+" + digits[:at] + new + digits[at + len(old) :])


def group_digits(digits: str) -> str:
    """Digits read back in the groups of a Russian number: «8916210» → «8 916 210»."""
    plus = "+" if digits.startswith("+") else ""
    d = digits.lstrip("+")
    if d[:1] in {"7", "8"} and len(d) > 1:
        head, d = d[0], d[1:]
        groups = [plus + head]
    else:
        groups = [plus] if plus else []
    for size in (3, 3, 2, 2):
        if d:
            groups.append(d[:size])
            d = d[size:]
    if d:
        groups.append(d)
    return " ".join(g for g in groups if g)


_MOBILE_START = re.compile(r"(?:(?:\+\s*)?[78][\s-]*)?\(?9\d\d\)?(?:[\s-]*\d)*")


def phone_start(text: str) -> tuple[str, tuple[int, int]] | None:
    """The beginning of a Russian mobile number inside a longer utterance («Ольга,
    8 916»): its digits («8916») and span, when it is not a whole number yet."""
    for m in _MOBILE_START.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 3 <= len(digits) <= 10 and (len(digits) > 3 or m.group().startswith(("8", "+", "7"))):
            plus = "+" if m.group().lstrip().startswith("+") else ""
            return plus + digits, m.span()
    return None
