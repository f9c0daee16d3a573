"""HTTP routes for operators: `/metrics` (Prometheus text) and `/metrics/turns` (JSON).

Both are protected. On the main port a request needs `Authorization: Bearer <token>`
with the token from env `VOICEBOT_METRICS_TOKEN` (`server.metrics_token`); without a
token configured they answer 404 there. `server.metrics_port` > 0 serves them again,
without a token, on a separate site bound to a loopback address only
(`metrics_app`), for a Prometheus on the same host.

`/metrics/turns` is the per-turn latency records of this worker (stage timings in ms
and the trigger; no caller data): what `voicebot bench` reads, since a histogram
cannot give it exact percentiles.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from voicebot.ops import metrics
from voicebot.ops.health import Readiness

BEARER = "Bearer "


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith(BEARER):
        return False
    # Constant time: the comparison must not tell how much of a guess was right.
    return hmac.compare_digest(header[len(BEARER) :].strip().encode(), token.encode())


def _handlers(
    turn_metrics: Iterable[dict[str, Any]], live_calls: Callable[[], int], token: str | None
) -> tuple[Any, Any]:
    """The two handlers; `token` None means "no check" (the loopback-only site)."""

    def check(request: web.Request) -> None:
        if token is None:
            return
        if not token:
            raise web.HTTPNotFound(text="metrics are off on this port: set VOICEBOT_METRICS_TOKEN")
        if not _authorized(request, token):
            raise web.HTTPUnauthorized(
                text="bearer token required", headers={"WWW-Authenticate": "Bearer"}
            )

    async def prometheus(request: web.Request) -> web.Response:
        check(request)
        body, content_type = metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = "no-store"
        return response

    async def turns(request: web.Request) -> web.Response:
        check(request)
        return web.json_response(
            {
                "pid": os.getpid(),
                "sessions": live_calls(),
                "turns": list(turn_metrics),
            },
            headers={"Cache-Control": "no-store"},
        )

    return prometheus, turns


def add_metrics_routes(
    app: web.Application,
    turn_metrics: Iterable[dict[str, Any]],
    live_calls: Callable[[], int],
    token: str,
) -> None:
    """`/metrics` and `/metrics/turns` on the main site, behind the bearer `token`."""
    prometheus, turns = _handlers(turn_metrics, live_calls, token)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/metrics/turns", turns)


def metrics_app(
    turn_metrics: Iterable[dict[str, Any]], live_calls: Callable[[], int]
) -> web.Application:
    """The separate metrics site (no token): bind it only to a loopback address."""
    app = web.Application()
    prometheus, turns = _handlers(turn_metrics, live_calls, None)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/metrics/turns", turns)
    return app


def readyz(readiness: Readiness) -> Any:
    """`GET /readyz`: 200 `{"ready": true}` while new calls are taken; 503 with the
    reasons while draining or a provider is overloaded or down (a balancer's probe)."""

    async def handler(request: web.Request) -> web.Response:
        ready, reasons = readiness.state()
        return web.json_response(
            {"ready": ready, "reasons": reasons},
            status=200 if ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    return handler


def check_loopback(host: str) -> None:
    """Raise ValueError unless `host` is a loopback address (the unauthenticated
    metrics site must never face the network)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"server.metrics_host {host!r} is not a loopback address; the metrics port has no "
            "token, so it may only listen on 127.0.0.1 or ::1 (use VOICEBOT_METRICS_TOKEN "
            "on the main port instead)"
        )
