"""AudioSocket call registry: caller id and DID for calls that carry only a UUID.

AudioSocket carries only the call's UUID; the dialplan posts caller id and DID to
`POST /audiosocket/register` (keyed by that UUID) just before `AudioSocket()`. The
registry holds them until the TCP connection arrives. The process's `Runtime` owns
one registry; `server.py` hands it to both the register route and the AudioSocket
server.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from voicebot.redact import mask_number

log = logging.getLogger(__name__)

REGISTER_ROUTE = "/audiosocket/register"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What the dialplan registered for one call UUID."""

    caller_id: str | None
    called_id: str | None
    utterances: tuple[str, ...] | None = None  # offline emulator transcript (tests, bench)
    registered_at: float = 0.0


class CallRegistry:
    """Caller id / DID posted by the dialplan, waiting for their AudioSocket connection.

    Bounded and expiring: a dialplan that registers and never connects costs nothing.
    """

    def __init__(
        self,
        ttl_s: float = 120.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._calls: OrderedDict[str, CallInfo] = OrderedDict()

    def register(
        self,
        call_uuid: str,
        caller_id: str | None,
        called_id: str | None,
        utterances: tuple[str, ...] | None = None,
    ) -> None:
        """Remember a call (a repeated UUID replaces the old entry)."""
        self._expire()
        key = str(uuidlib.UUID(call_uuid))
        self._calls.pop(key, None)
        self._calls[key] = CallInfo(caller_id, called_id, utterances, self._clock())
        while len(self._calls) > self.max_entries:
            self._calls.popitem(last=False)

    def pop(self, call_uuid: str) -> CallInfo | None:
        """Take the call's entry (once); None when unknown or expired."""
        self._expire()
        return self._calls.pop(call_uuid, None)

    def __len__(self) -> int:
        return len(self._calls)

    def _expire(self) -> None:
        cutoff = self._clock() - self.ttl_s
        while self._calls:
            key, info = next(iter(self._calls.items()))
            if info.registered_at >= cutoff:
                break
            del self._calls[key]


def _trusted_peer(remote: str | None) -> bool:
    """The register endpoint is for the Asterisk box: loopback or a private network."""
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private


def _bearer_ok(request: web.Request, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time."""
    auth = request.headers.get("Authorization", "")
    offered = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return hmac.compare_digest(offered.encode(), secret.encode())


def _clean_number(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()[:64]
    return text if text and text.isprintable() else None


def add_register_route(
    app: web.Application,
    registry: CallRegistry,
    *,
    trusted: Callable[[str | None], bool] = _trusted_peer,
    secret: str = "",
) -> None:
    """Mount `POST /audiosocket/register`: {uuid, caller_id, did} as JSON or a form
    (Asterisk's `CURL(url,post-data)` sends the latter).

    Who may register: a loopback or private peer (the Asterisk box), never a request
    relayed by a reverse proxy (one carrying `X-Forwarded-For`/`Forwarded`: behind
    nginx every request comes from 127.0.0.1, so the peer alone proves nothing), and,
    when `secret` is set (env VOICEBOT_AUDIOSOCKET_SECRET), only with
    `Authorization: Bearer <secret>`. 403 otherwise.
    """

    async def register(request: web.Request) -> web.Response:
        if not trusted(request.remote):
            log.warning("audiosocket register: refused peer %s", request.remote)
            raise web.HTTPForbidden(text="not allowed from this address")
        if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
            log.warning("audiosocket register: refused a proxied request")
            raise web.HTTPForbidden(text="not served through a proxy")
        if secret and not _bearer_ok(request, secret):
            log.warning("audiosocket register: refused: bad or missing secret")
            raise web.HTTPForbidden(text="bad or missing secret")
        if request.content_length is not None and request.content_length > 4096:
            raise web.HTTPRequestEntityTooLarge(max_size=4096, actual_size=request.content_length)
        body: Mapping[str, Any]
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except (ValueError, RecursionError) as exc:
                raise web.HTTPBadRequest(text="invalid JSON") from exc
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="expected a JSON object")
        else:
            body = {**request.query, **(await request.post())}
        call_uuid = body.get("uuid")
        try:
            canonical = str(uuidlib.UUID(str(call_uuid)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="uuid must be a UUID") from exc
        caller = _clean_number(body.get("caller_id", body.get("caller")))
        called = _clean_number(body.get("did", body.get("called_id", body.get("exten"))))
        utter = body.get("utterances")
        utterances = (
            tuple(utter)
            if isinstance(utter, list) and all(isinstance(u, str) for u in utter)
            else None
        )
        registry.register(canonical, caller, called, utterances)
        log.info(
            "audiosocket register %s: %s -> %s", canonical, mask_number(caller), mask_number(called)
        )
        return web.json_response({"ok": True, "uuid": canonical})

    app.router.add_post(REGISTER_ROUTE, register)
