"""YCLIENTS/Altegio REST API v2 wire shapes as pure functions (no I/O).

Source: the official API Blueprint (developer.yclients.com; a copy is kept in
github.com/mkosinov/yclientsapi docs/yclients_official/yclientsru.apib) and
shared/docs/integrations-research.md:
- every response is an envelope `{"success": bool, "data": ..., "meta": ...}`;
- auth header `Authorization: Bearer <partner token>, User <user token>`;
- `Accept: application/vnd.yclients.v2+json` (Altegio: `application/vnd.api.v2+json`);
- errors: HTTP 422 (403 for a blacklisted client) with `meta.message` and a numeric code
  (431 bad phone, 432 SMS code required/wrong, 433 slot taken, 434 blacklisted, 435 no
  name, 436 no free master, 437 overlap in one request, 438 service deleted); 402 means
  the salon's licence expired; 429 the rate limit (5 requests/s per IP).
The public docs place the numeric code inconsistently, so `error_code` reads
`errors.code`, `meta.code` and `meta.errors.code`, whichever is present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

ACCEPT = {
    "yclients": "application/vnd.yclients.v2+json",
    "altegio": "application/vnd.api.v2+json",
}

SLOT_TAKEN_CODES = frozenset({433, 436, 437})
BAD_PHONE = 431
SMS_CODE_REQUIRED = 432


class YclientsError(Exception):
    """A non-success answer: HTTP status, the API's numeric code (0 if none), message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"YCLIENTS HTTP {status} code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """429 and 5xx: the same request may succeed later."""
        return self.status == 429 or self.status >= 500


def headers(flavor: str, partner: str, user: str = "") -> dict[str, str]:
    """Request headers: versioned Accept and the two-token Authorization."""
    auth = f"Bearer {partner}" + (f", User {user}" if user else "")
    return {
        "Accept": ACCEPT[flavor],
        "Content-Type": "application/json",
        "Authorization": auth,
    }


def parse_auth(value: str) -> tuple[str, str]:
    """(partner, user) from an Authorization header value; empty strings when absent."""
    partner = user = ""
    for part in value.split(","):
        part = part.strip()
        if part.startswith("Bearer "):
            partner = part[len("Bearer ") :].strip()
        elif part.startswith("User "):
            user = part[len("User ") :].strip()
    return partner, user


def error_code(body: Any) -> int:
    """The numeric API error code of an error body, 0 when there is none."""
    if not isinstance(body, Mapping):
        return 0
    candidates: list[Any] = []
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        candidates.append(errors.get("code"))
    meta = body.get("meta")
    if isinstance(meta, Mapping):
        candidates.append(meta.get("code"))
        if isinstance(meta.get("errors"), Mapping):
            candidates.append(meta["errors"].get("code"))
    for c in candidates:
        try:
            if c is not None:
                return int(c)
        except (TypeError, ValueError):
            continue
    return 0


def unwrap(status: int, body: Any) -> Any:
    """The `data` of a successful envelope; raises `YclientsError` otherwise.

    A 2xx with `success: false` is an error too (one public client library treats it as
    success when `errors` is missing; that would confirm bookings that do not exist).
    204 No Content (DELETE) gives None.
    """
    if status == 204:
        return None
    ok = 200 <= status < 300
    if isinstance(body, Mapping) and ok and body.get("success") is True:
        return body.get("data")
    if ok and body in (None, "", b""):
        return None  # some 201s (book_check) come with an empty body
    message = ""
    if isinstance(body, Mapping):
        meta = body.get("meta")
        if isinstance(meta, Mapping):
            message = str(meta.get("message") or "")
        errors = body.get("errors")
        if not message and isinstance(errors, Mapping):
            message = str(errors.get("message") or "")
    raise YclientsError(status if not ok else 422, error_code(body), message or "unsuccessful")


def envelope(data: Any, meta: Any = None) -> dict[str, Any]:
    """A success envelope (the emulator's answers)."""
    return {"success": True, "data": data, "meta": meta if meta is not None else []}


def error_envelope(message: str, code: int = 0) -> dict[str, Any]:
    """An error envelope with the message in `meta` and the numeric code in `errors`."""
    body: dict[str, Any] = {"success": False, "data": None, "meta": {"message": message}}
    if code:
        body["errors"] = {"code": code, "message": message}
    return body


@dataclass(frozen=True, slots=True)
class FreeTime:
    """One `book_times` entry: wall time "HH:MM", length in seconds, and the `datetime`
    string with its offset, exactly as the API gave it (what `book_record` wants back)."""

    time: str
    seance_length: int
    datetime: str

    @property
    def start(self) -> datetime:
        """The aware start instant (offset from the API, never from a zone name)."""
        return datetime.fromisoformat(self.datetime)


def parse_times(data: Any) -> list[FreeTime]:
    """`book_times` data → FreeTime list (entries without a datetime are skipped)."""
    out: list[FreeTime] = []
    for item in data or ():
        if isinstance(item, Mapping) and item.get("datetime"):
            out.append(
                FreeTime(
                    time=str(item.get("time") or ""),
                    seance_length=int(item.get("seance_length") or 0),
                    datetime=str(item["datetime"]),
                )
            )
    return out


def parse_dates(data: Any) -> list[date]:
    """`book_dates` data → the dates with free time (`booking_dates`)."""
    if not isinstance(data, Mapping):
        return []
    return sorted(date.fromisoformat(str(d)[:10]) for d in data.get("booking_dates") or ())


def appointment(
    service_ids: Sequence[int], staff_id: int, when: str, index: int = 1
) -> dict[str, Any]:
    """One `appointments[]` item of book_check/book_record; `when` is the API datetime."""
    return {"id": index, "services": list(service_ids), "staff_id": staff_id, "datetime": when}


def record_request(
    *,
    phone_e164: str,
    fullname: str,
    appointments: Sequence[Mapping[str, Any]],
    api_id: str,
    comment: str = "",
    notify_by_sms: int = 0,
    notify_by_email: int = 0,
) -> dict[str, Any]:
    """The `book_record` body: phone as digits without "+", `api_id` = our call id."""
    return {
        "phone": phone_e164.lstrip("+"),
        "fullname": fullname,
        "email": "",
        "comment": comment,
        "notify_by_sms": notify_by_sms,
        "notify_by_email": notify_by_email,
        "api_id": api_id,
        "appointments": [dict(a) for a in appointments],
    }


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a YCLIENTS record (`/records`, `/record`) the bot uses."""

    id: int
    staff_id: int
    service_ids: tuple[int, ...]
    datetime: str
    seance_length: int
    client_name: str
    client_phone: str  # digits as the API gives them, "+" stripped
    api_id: str
    deleted: bool

    @property
    def start(self) -> datetime:
        """The aware start instant."""
        return datetime.fromisoformat(self.datetime)


def parse_record(item: Mapping[str, Any]) -> Record:
    """One record object → Record."""
    client = item.get("client") or {}
    staff = item.get("staff") or {}
    return Record(
        id=int(item["id"]),
        staff_id=int(item.get("staff_id") or staff.get("id") or 0),
        service_ids=tuple(int(s["id"]) for s in item.get("services") or () if "id" in s),
        datetime=str(item.get("datetime") or ""),
        seance_length=int(item.get("seance_length") or item.get("length") or 0),
        client_name=str(client.get("name") or ""),
        client_phone="".join(ch for ch in str(client.get("phone") or "") if ch.isdigit()),
        api_id=str(item.get("api_id") or ""),
        deleted=bool(item.get("deleted")),
    )


def parse_records(data: Any) -> list[Record]:
    """`/records` data (a list of record objects) → Records."""
    return [parse_record(x) for x in data or () if isinstance(x, Mapping) and "id" in x]
