"""`GET /metrics`: the runtime's recent per-turn latency records, as JSON.

`voicebot bench` reads the server's own stage timings from here (engine overhead and
provider waits are only known inside the process). Mount with
`add_metrics_route(app, runtime)` in `voicebot/server.py`'s `create_app`. The records
hold no caller data: stage timings in ms and the turn trigger only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def add_metrics_route(app: web.Application, runtime: Any) -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.json_response(
            {"turns": list(runtime.turn_metrics), "sessions": len(runtime.sessions)}
        )

    app.router.add_get("/metrics", metrics)
