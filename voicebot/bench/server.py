"""The process under test of `voicebot bench`: exactly `voicebot serve`, plus
bench-only routes.

`POST /bench/reset` empties the turn records, the speculation totals and the loop-lag
samples between ramp steps; `GET /bench/speculation` reports the speculation totals;
`GET /bench/stats` reports how late the event loop ran a 50 ms timer, and
`POST /bench/lag_reset` restarts that count. The app is `create_app`'s, extended through
`serve(make_app=...)`: nothing is patched. The event loop (uvloop or asyncio) and
gc.freeze are the server's own settings (`server.uvloop`, `server.gc_freeze`).

With `serve --workers N` the kernel hands each request on the shared port to one
worker (SO_REUSEPORT), so those routes would reach one worker at random. Each server
process therefore also serves them, plus `GET /bench/turns` (its per-turn records, as
`/metrics/turns`), on a private port of its own on 127.0.0.1, and announces it in
`$VOICEBOT_BENCH_DIR/server-<pid>.json` (`{"pid": ..., "port": ...}`, removed on a clean
exit): the bench asks every process it finds there and adds the answers up
(voicebot/bench/servers.py). The private site has no token: it binds loopback only and
exists only in this bench-only process; the records hold timings, no caller data.

    python -m voicebot.bench.server serve --config FILE ... [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from voicebot.bench.measure import HOST
from voicebot.bench.servers import BENCH_DIR_ENV
from voicebot.server import create_app
from voicebot.server import run_cli as run_serve

if TYPE_CHECKING:
    from voicebot.runtime import Runtime


class LoopLag:
    """How late the event loop runs a 50 ms timer (ms): the latency every call shares."""

    PERIOD_S = 0.05

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Sample forever (bounded memory)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.PERIOD_S)
            self.samples.append((loop.time() - t - self.PERIOD_S) * 1000)
            if len(self.samples) > 100_000:
                del self.samples[:50_000]

    def summary(self) -> dict[str, float]:
        """n, p50, p99 and max of the samples (ms)."""
        xs = sorted(self.samples)
        if not xs:
            return {"n": 0}

        def q(p: float) -> float:
            return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)

        return {"n": len(xs), "p50": q(0.5), "p99": q(0.99), "max": round(xs[-1], 2)}


def bench_app(runtime: Runtime) -> web.Application:
    """`create_app(runtime)` with the bench routes and the loop-lag sampler."""
    app = create_app(runtime)
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

    async def lag_reset(request: web.Request) -> web.Response:
        lag.samples.clear()
        return web.json_response({"ok": True})

    async def turns(request: web.Request) -> web.Response:
        return web.json_response({"pid": os.getpid(), "turns": list(runtime.turn_metrics)})

    async def start_lag(app: web.Application) -> None:
        lag.task = asyncio.get_running_loop().create_task(lag.run())

    async def stop_lag(app: web.Application) -> None:
        if lag.task is not None:
            lag.task.cancel()

    routes = [
        web.post("/bench/reset", reset),
        web.get("/bench/stats", stats),
        web.get("/bench/speculation", speculation),
        web.post("/bench/lag_reset", lag_reset),
    ]
    app.router.add_routes(routes)
    private = web.Application()
    private.router.add_routes([*routes, web.get("/bench/turns", turns)])
    site = PrivateSite(private, os.environ.get(BENCH_DIR_ENV))
    app.on_startup.append(start_lag)
    app.on_startup.append(site.start)
    app.on_cleanup.append(site.stop)
    app.on_cleanup.append(stop_lag)
    return app


class PrivateSite:
    """This process's own bench port on 127.0.0.1 and its announcement file (see the
    module docstring); nothing when `bench_dir` is None."""

    def __init__(self, app: web.Application, bench_dir: str | None) -> None:
        self.app = app
        self.file = Path(bench_dir) / f"server-{os.getpid()}.json" if bench_dir else None
        self.runner: web.AppRunner | None = None

    async def start(self, _: web.Application) -> None:
        """Serve the private app on a free port; write the announcement atomically."""
        if self.file is None:
            return
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        port = self.runner.addresses[0][1]
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}), encoding="utf-8")
        tmp.replace(self.file)

    async def stop(self, _: web.Application) -> None:
        """Remove the announcement, close the port."""
        if self.file is not None:
            self.file.unlink(missing_ok=True)
        if self.runner is not None:
            await self.runner.cleanup()


def run_bench_serve(args: argparse.Namespace) -> int:
    """`voicebot serve` with the bench app (`--workers N`: N workers of this module)."""
    args.worker_module = "voicebot.bench.server"
    return run_serve(args, make_app=bench_app)


def main(argv: list[str]) -> int:
    """`voicebot`'s own flags; `serve` runs with the bench app."""
    from voicebot.cli import main as cli_main

    return cli_main(argv, target="voicebot.bench.server:run_bench_serve")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
