"""Telegram Bot API `sendMessage` to the salon admin's chat.

Wire facts (core.telegram.org/bots/api): `POST {api}/bot<token>/sendMessage` with JSON
`{chat_id, text (1-4096 characters)}` → `{"ok": true, "result": {"message_id": ...}}`
or `{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`; on 429
wait `retry_after` seconds; about one message per second per chat. The token is part of
the URL path, so URLs are never logged.
"""

from __future__ import annotations

from typing import Any

import httpx

from booking.notify.channels.base import ChannelDown, Rejected, RetryLater
from booking.notify.message import OutboxRow
from booking.notify.templates import Rendered

MAX_TEXT = 4096


def send_message_request(
    api_url: str, token: str, chat_id: str, text: str
) -> tuple[str, dict[str, Any]]:
    """(URL, JSON body) of a sendMessage call."""
    return (
        f"{api_url.rstrip('/')}/bot{token}/sendMessage",
        {"chat_id": chat_id, "text": text[:MAX_TEXT], "disable_web_page_preview": True},
    )


def parse_send_message(status: int, body: Any) -> str:
    """The message id; raises RetryLater / Rejected / ChannelDown for an error answer."""
    if isinstance(body, dict) and body.get("ok") is True:
        return str((body.get("result") or {}).get("message_id", ""))
    code = int(body.get("error_code") or status) if isinstance(body, dict) else status
    desc = str(body.get("description") or "") if isinstance(body, dict) else ""
    params = (body.get("parameters") or {}) if isinstance(body, dict) else {}
    if code == 429:
        return _raise(RetryLater(f"telegram 429: {desc}", float(params.get("retry_after") or 1)))
    if code >= 500:
        return _raise(RetryLater(f"telegram {code}: {desc}"))
    if code in (401, 403, 404) or "chat not found" in desc.lower():
        return _raise(ChannelDown(f"telegram {code}: {desc} (check the bot token and chat id)"))
    return _raise(Rejected(f"telegram {code}: {desc}"))


def _raise(e: Exception) -> str:
    raise e


class TelegramChannel:
    """`Channel` sending to one chat."""

    name = "telegram"

    def __init__(self, api_url: str, token: str, chat_id: str, *, timeout_s: float = 10.0) -> None:
        self.api_url, self._token, self.chat_id = api_url, token, chat_id
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, row: OutboxRow, message: Rendered) -> str:
        """POST sendMessage; network errors are temporary."""
        url, body = send_message_request(self.api_url, self._token, self.chat_id, message.text)
        try:
            resp = await self._http.post(url, json=body)
        except httpx.HTTPError as e:
            raise RetryLater(f"telegram: {type(e).__name__}") from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        return parse_send_message(resp.status_code, payload)

    async def aclose(self) -> None:
        """Close the HTTP pool."""
        await self._http.aclose()
