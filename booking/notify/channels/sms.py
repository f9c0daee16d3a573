"""SMS to the client through SMS.ru or SMSC.ru (JSON answers; codecs are pure).

SMS.ru (sms.ru/api/send): `POST {url}/sms/send` form `api_id, to, msg, json=1[, from]`
→ `{"status": "OK", "status_code": 100, "sms": {"7916...": {"status": "OK",
"status_code": 100, "sms_id": "..."}}, "balance": ...}`; an error is `status: "ERROR"`
with `status_code` (200 bad api_id, 201 no money, 202 bad number, 203 no text, 204 sender
not approved, 205 too long, 206 daily limit, 207 number not allowed, 209 stop list,
220 service unavailable, 230-232 per-number/identical-text limits, 300-302 auth).
SMSC (smsc.ru/api/http): `POST {url}/sys/send.php` form `login, psw, phones, mes, fmt=3,
charset=utf-8[, sender]` → `{"id": ..., "cnt": ...}` or `{"error", "error_code"}`: 1
params, 2 auth, 3 no money, 4 IP blocked after too many errors (stop sending!), 5 date
format, 6 forbidden, 7 bad number, 8 undeliverable, 9 duplicate request within a minute.
A "duplicate/identical text" answer means an earlier attempt of this very row got
through (its answer was lost): it counts as delivered, not as a second message.
"""

from __future__ import annotations

from typing import Any

import httpx

from booking.notify.channels.base import ChannelDown, Rejected, RetryLater
from booking.notify.message import OutboxRow
from booking.notify.templates import Rendered

SMSRU_DOWN = {200, 201, 204, 300, 301, 302}
SMSRU_REJECTED = {202, 203, 205, 207, 208, 209, 212, 213}
SMSRU_ALREADY = {231, 232}
SMSC_DOWN = {2, 3, 4}
SMSC_REJECTED = {1, 5, 6, 7, 8}


def smsru_request(
    url: str, api_id: str, phone: str, text: str, sender: str = ""
) -> tuple[str, dict[str, str]]:
    """(URL, form) for SMS.ru; the phone as digits."""
    form = {"api_id": api_id, "to": phone.lstrip("+"), "msg": text, "json": "1"}
    if sender:
        form["from"] = sender
    return f"{url}/sms/send", form


def parse_smsru(body: Any, phone: str) -> str:
    """The sms_id; raises for an error (top-level or for this number)."""
    if not isinstance(body, dict):
        raise RetryLater("sms.ru: no JSON answer")
    code = int(body.get("status_code") or 0)
    if body.get("status") == "OK" and code == 100:
        item = (body.get("sms") or {}).get(phone.lstrip("+")) or {}
        if item.get("status") == "OK" or int(item.get("status_code") or 100) == 100:
            return str(item.get("sms_id") or "")
        code = int(item.get("status_code") or 0)
        text = str(item.get("status_text") or "")
    else:
        text = str(body.get("status_text") or "")
    return _smsru_error(code, text)


def _smsru_error(code: int, text: str) -> str:
    if code in SMSRU_ALREADY:
        return "duplicate"
    if code in SMSRU_DOWN:
        raise ChannelDown(f"sms.ru {code}: {text}")
    if code in SMSRU_REJECTED:
        raise Rejected(f"sms.ru {code}: {text}")
    if code in (206, 230):
        raise RetryLater(f"sms.ru {code}: {text}", 3600.0)
    raise RetryLater(f"sms.ru {code}: {text}")


def smsc_request(
    url: str, login: str, psw: str, phone: str, text: str, sender: str = ""
) -> tuple[str, dict[str, str]]:
    """(URL, form) for SMSC."""
    form = {
        "login": login,
        "psw": psw,
        "phones": phone.lstrip("+"),
        "mes": text,
        "fmt": "3",
        "charset": "utf-8",
    }
    if sender:
        form["sender"] = sender
    return f"{url}/sys/send.php", form


def parse_smsc(body: Any) -> str:
    """The SMSC message id; raises for an error."""
    if not isinstance(body, dict):
        raise RetryLater("smsc: no JSON answer")
    if "error_code" not in body and "error" not in body:
        return str(body.get("id", ""))
    code = int(body.get("error_code") or 0)
    text = str(body.get("error") or "")
    if code == 9:
        return "duplicate"
    if code == 4:
        raise ChannelDown(f"smsc 4: {text} — SMSC blocked this IP after too many errors")
    if code in SMSC_DOWN:
        raise ChannelDown(f"smsc {code}: {text}")
    if code in SMSC_REJECTED:
        raise Rejected(f"smsc {code}: {text}")
    raise RetryLater(f"smsc {code}: {text}")


class SmsChannel:
    """`Channel` for SMS.ru or SMSC."""

    name = "sms"

    def __init__(
        self,
        provider: str,
        url: str,
        api_key: str,
        *,
        login: str = "",
        sender: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        self.provider, self.url = provider, url
        self._key, self._login, self.sender = api_key, login, sender
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, row: OutboxRow, message: Rendered) -> str:
        """POST the form; network errors are temporary."""
        if not row.recipient:
            raise Rejected("sms: no phone number")
        if self.provider == "smsc":
            url, form = smsc_request(
                self.url, self._login, self._key, row.recipient, message.text, self.sender
            )
        else:
            url, form = smsru_request(self.url, self._key, row.recipient, message.text, self.sender)
        try:
            resp = await self._http.post(url, data=form)
        except httpx.HTTPError as e:
            raise RetryLater(f"{self.provider}: {type(e).__name__}") from None
        if resp.status_code >= 500:
            raise RetryLater(f"{self.provider}: HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if self.provider == "smsc":
            return parse_smsc(body)
        return parse_smsru(body, row.recipient)

    async def aclose(self) -> None:
        """Close the HTTP pool."""
        await self._http.aclose()
