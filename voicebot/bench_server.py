"""The process under test of `voicebot bench`: exactly `voicebot serve`, plus `/metrics`.

Until `voicebot/server.py` mounts `voicebot.metrics` itself, this wrapper adds the
route to the app `serve` builds, and a bench-only `POST /bench/reset` that empties the
turn records between ramp steps. The event loop (uvloop or asyncio) and gc.freeze are
the server's own settings (`server.uvloop`, `server.gc_freeze`).

    python -m voicebot.bench_server serve --config FILE ...
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp import web


class LoopLag:
    """How late the event loop runs a 50 ms timer: the latency every call shares."""

    PERIOD_S = 0.05

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.PERIOD_S)
            self.samples.append((loop.time() - t - self.PERIOD_S) * 1000)
            if len(self.samples) > 100_000:
                del self.samples[:50_000]

    def summary(self) -> dict[str, float]:
        xs = sorted(self.samples)
        if not xs:
            return {"n": 0}
        q = lambda p: round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)  # noqa: E731
        return {"n": len(xs), "p50": q(0.5), "p99": q(0.99), "max": round(xs[-1], 2)}


def _wrap_create_app() -> None:
    from voicebot import server
    from voicebot.metrics import add_metrics_route

    original = server.create_app

    def create_app(runtime: Any, **kwargs: Any) -> web.Application:
        app = original(runtime, **kwargs)
        if not any(
            getattr(r.resource, "canonical", None) == "/metrics" for r in app.router.routes()
        ):
            add_metrics_route(app, runtime.turn_metrics, runtime.live_calls)

        lag = LoopLag()

        async def reset(request: web.Request) -> web.Response:
            runtime.turn_metrics.clear()
            runtime.speculation_totals.clear()
            lag.samples.clear()
            return web.json_response({"ok": True})

        async def speculation(request: web.Request) -> web.Response:
            return web.json_response(dict(runtime.speculation_totals))

        async def stats(request: web.Request) -> web.Response:
            return web.json_response(lag.summary())

        async def start_lag(app: web.Application) -> None:
            lag.task = asyncio.get_running_loop().create_task(lag.run())

        async def stop_lag(app: web.Application) -> None:
            if lag.task is not None:
                lag.task.cancel()

        app.router.add_post("/bench/reset", reset)

        async def lag_reset(request: web.Request) -> web.Response:
            lag.samples.clear()
            return web.json_response({"ok": True})

        app.router.add_get("/bench/stats", stats)
        app.router.add_get("/bench/speculation", speculation)
        app.router.add_post("/bench/lag_reset", lag_reset)
        app.on_startup.append(start_lag)
        app.on_cleanup.append(stop_lag)
        return app

    server.create_app = create_app  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    _wrap_create_app()
    from voicebot.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
