"""`/metrics` (Prometheus text) and `/metrics/turns` (per-turn JSON records).

The routes live in `voicebot.ops.http`; this keeps the old entry point
`add_metrics_route` for `create_app` and the bench server. Both routes need the
bearer token of `server.metrics_token` (env `VOICEBOT_METRICS_TOKEN`) on the main
port; the records hold no caller data (stage timings in ms and the turn trigger).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from voicebot.ops.http import add_metrics_routes


def add_metrics_route(
    app: web.Application,
    turn_metrics: Iterable[dict[str, Any]],
    live_calls: Callable[[], int],
    token: str = "",
) -> None:
    """Mount `GET /metrics` and `GET /metrics/turns` behind the bearer `token`
    (no token: they answer 404 on this port)."""
    add_metrics_routes(app, turn_metrics, live_calls, token)
