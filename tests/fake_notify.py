"""Local fakes of the notification providers, speaking their real request and response
shapes (Telegram Bot API sendMessage; SMS.ru /sms/send; SMSC /sys/send.php), with
switches for the errors the sender must handle. Test doubles, on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sent:
    """A message a fake accepted."""

    to: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)


class FakeServer:
    """Start/stop an aiohttp app on a free loopback port."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class FakeTelegram(FakeServer):
    """`POST /bot<token>/sendMessage` → `{"ok": true, "result": {message_id, chat, text}}`.

    `retry_after_next`: answer the next N requests 429 with `parameters.retry_after`.
    `hold`: park requests without processing them (a stalled network) until released;
    a held request whose client went away is never delivered.
    """

    def __init__(self, token: str, chat_id: str) -> None:
        super().__init__()
        self.token, self.chat_id = token, chat_id
        self.sent: list[Sent] = []
        self.retry_after_next = 0
        self.retry_after = 1
        self.hold = False
        self.held = 0
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()  # set on every accepted message
        self.app.router.add_post("/bot{token}/sendMessage", self._send)

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        if self.hold:
            self.held += 1
            await self.release.wait()
        body = await request.json()
        if self.retry_after_next > 0:
            self.retry_after_next -= 1
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {self.retry_after}",
                    "parameters": {"retry_after": self.retry_after},
                },
                status=429,
            )
        if str(body.get("chat_id")) != self.chat_id:
            return web.json_response(
                {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
                status=400,
            )
        text = str(body.get("text") or "")
        if not text:
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
                status=400,
            )
        self.sent.append(Sent(str(body["chat_id"]), text))
        self.arrived.set()
        return web.json_response(
            {
                "ok": True,
                "result": {
                    "message_id": len(self.sent),
                    "chat": {"id": int(self.chat_id), "type": "private"},
                    "date": 0,
                    "text": text,
                },
            }
        )


class FakeSms(FakeServer):
    """SMS.ru `/sms/send` (form, json=1) and SMSC `/sys/send.php` (form, fmt=3).

    `smsru_code` / `smsc_error`: the next answers' status_code / error_code (100 / 0 =
    success); SMSC error 4 (IP blocked) stays on once set, as the real block does.
    """

    def __init__(self, key: str, login: str = "") -> None:
        super().__init__()
        self.key, self.login = key, login
        self.sent: list[Sent] = []
        self.smsru_code = 100
        self.smsc_error = 0
        self.app.router.add_post("/sms/send", self._smsru)
        self.app.router.add_post("/sys/send.php", self._smsc)

    async def _smsru(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        if form.get("api_id") != self.key:
            return web.json_response(
                {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"}
            )
        to = str(form.get("to"))
        if self.smsru_code != 100:
            return web.json_response(
                {
                    "status": "OK",
                    "status_code": 100,
                    "sms": {
                        to: {"status": "ERROR", "status_code": self.smsru_code, "status_text": "x"}
                    },
                    "balance": 10.0,
                }
            )
        self.sent.append(Sent(to, str(form.get("msg"))))
        return web.json_response(
            {
                "status": "OK",
                "status_code": 100,
                "sms": {
                    to: {"status": "OK", "status_code": 100, "sms_id": f"0000-{len(self.sent)}"}
                },
                "balance": 10.0,
            }
        )

    async def _smsc(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        if self.smsc_error:
            return web.json_response({"error": "error", "error_code": self.smsc_error})
        if form.get("login") != self.login or form.get("psw") != self.key:
            return web.json_response({"error": "authorise error", "error_code": 2})
        self.sent.append(Sent(str(form.get("phones")), str(form.get("mes"))))
        return web.json_response({"id": len(self.sent), "cnt": 1})
