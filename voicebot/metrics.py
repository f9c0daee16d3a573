"""`GET /metrics`: the runtime's recent per-turn latency records, as JSON.

`voicebot bench` reads the server's own stage timings from here (engine overhead and
provider waits are only known inside the process). Mount with
`add_metrics_route(app, runtime)` in `voicebot/server.py`'s `create_app`. The records
hold no caller data: stage timings in ms and the turn trigger only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web


def add_metrics_route(
    app: web.Application,
    turn_metrics: Iterable[dict[str, Any]],
    live_calls: Callable[[], int],
) -> None:
    """Mount `GET /metrics`: `{"turns": [per-turn latency records], "sessions": N}`."""

    async def metrics(request: web.Request) -> web.Response:
        return web.json_response({"turns": list(turn_metrics), "sessions": live_calls()})

    app.router.add_get("/metrics", metrics)
