"""`voicebot serve`: the browser demo, its call WebSocket, and the telephony endpoints.

One aiohttp app, one process-wide `Runtime` (providers shared by every call). With no
Yandex Cloud credentials the runtime runs on the in-process emulator; we say so in the
log and in every `ready`, so nobody mistakes the emulator's scripted transcript for
real recognition. Nothing from the configuration reaches the page except what
`/api/info` and `ready` list explicitly: no secret can leak by accident.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from voicebot.config import Config, load_config
from voicebot.metrics import add_metrics_route
from voicebot.ops import logs, metrics
from voicebot.ops.drain import drain
from voicebot.ops.health import Readiness
from voicebot.ops.http import check_loopback, metrics_app, readyz
from voicebot.ops.limits import AddressLimiter, client_address, parse_networks
from voicebot.ops.looplag import LoopLagMonitor
from voicebot.ops.workers import is_worker, supervise
from voicebot.transports import voximplant
from voicebot.transports.audiosocket import AudioSocketServer, start_audiosocket
from voicebot.transports.audiosocket_register import (
    REGISTER_ROUTE,
    CallRegistry,
    add_register_route,
)
from voicebot.transports.browser import (
    BrowserCall,
    BrowserLimits,
    BrowserSession,
    BrowserTransport,
    SessionFactory,
    StartRequest,
    refuse_busy,
)
from voicebot.transports.host import CallHost

if TYPE_CHECKING:
    from collections import deque

    from voicebot.runtime import Runtime

log = logging.getLogger(__name__)


class ServedHost(CallHost, Protocol):
    """What the web app needs of the process beyond opening calls (`Runtime`
    implements it; so does the tests' fake host)."""

    cfg: Config
    offline: bool
    audiosocket_registry: CallRegistry
    turn_metrics: deque[dict[str, Any]]
    modes: Mapping[str, Any]  # dialogues a browser caller may pick, the default first
    default_mode: str | None
    readiness: Readiness

    def live_calls(self) -> int:
        """Calls open right now, every channel."""
        ...

    def public_info(self) -> Mapping[str, str]:
        """What the dialogue domain lets the page show before a call."""
        ...

    def mount_dialogue_routes(self, app: web.Application) -> None:
        """Let the dialogue domain mount its own pages on `app`."""
        ...


STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

RUNTIME_KEY = web.AppKey("runtime", Any)
CALLS_KEY = web.AppKey("browser_calls", set)
FACTORY_KEY = web.AppKey("session_factory", Any)
EDGE_KEY = web.AppKey("edge", Any)  # (trusted proxy networks, per-address /ws limiter)

# The page loads only its own assets and talks only to its own origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def default_session_factory(host: CallHost) -> SessionFactory:
    """Browser `start` -> a call on `host` (the language tag goes into the call's
    metadata; an emulator script, if any, is the host's to use or ignore)."""

    def new_session(transport: BrowserTransport, start: StartRequest) -> BrowserSession:
        metadata = {"language": start.language} if start.language else None
        session_id = uuid.uuid4().hex[:12]
        return host.open_call(
            transport,
            channel="browser",
            metadata=metadata,
            script=start.emulator_utterances,
            script_id=f"browser-{session_id}",
            session_id=session_id,
            mode=start.mode,
        )

    return new_session


def create_app(
    runtime: ServedHost, *, session_factory: SessionFactory | None = None
) -> web.Application:
    """The web app around a ready runtime; `session_factory` lets tests script the STT."""
    app = web.Application(middlewares=[_security_headers])
    app[RUNTIME_KEY] = runtime
    app[CALLS_KEY] = set()
    app[FACTORY_KEY] = session_factory or default_session_factory(runtime)
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _call_ws)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readyz(runtime.readiness))
    s = runtime.cfg.server
    app[EDGE_KEY] = (
        parse_networks(s.trusted_proxies),
        AddressLimiter(s.ws_connections_per_address),
    )
    app.router.add_get("/api/info", _info)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    app.on_shutdown.append(_end_calls)
    add_metrics_route(
        app, runtime.turn_metrics, runtime.live_calls, runtime.cfg.server.metrics_token
    )
    _mount_telephony(app, runtime)
    # The dialogue domain may serve pages of its own (the booking bot's salon page and
    # calendar feed); the engine only offers it the app.
    runtime.mount_dialogue_routes(app)
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path == "/" or request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-cache")
    return response


def _mount_telephony(app: web.Application, host: ServedHost) -> None:
    """`GET /voximplant` and `POST /audiosocket/register` (the host's one registry,
    shared with the AudioSocket server so caller ids reach their calls)."""
    cfg = host.cfg
    handler = voximplant.make_handler(
        host, cfg.telephony.voximplant, max_message_bytes=cfg.server.max_message_bytes
    )
    app.router.add_get(voximplant.ROUTE, handler)
    add_register_route(
        app, host.audiosocket_registry, secret=cfg.telephony.audiosocket.register_secret
    )


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


PUBLIC_INFO_KEYS = ("name", "address", "timezone")


async def _info(request: web.Request) -> web.Response:
    """What the page needs before a call: only public facts, listed one by one."""
    runtime = request.app[RUNTIME_KEY]
    cfg: Config = runtime.cfg
    return web.json_response(
        {
            "offline": bool(runtime.offline),
            # Offline the chat's answers are the emulator's scripted/echo replies.
            "llm": "emulator" if runtime.offline else "yandexgpt",
            "modes": _modes(runtime),
            "default_mode": runtime.default_mode,
            # The page's `salon` block: the dialogue's public info, these keys only.
            "salon": {k: str(runtime.public_info().get(k, "")) for k in PUBLIC_INFO_KEYS},
            "sample_rates": list(cfg.server.allowed_sample_rates),
            "max_message_bytes": cfg.server.max_message_bytes,
        }
    )


async def _healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME_KEY]
    calls: set[BrowserCall] = request.app[CALLS_KEY]
    return web.json_response(
        {
            "ok": True,
            "pid": os.getpid(),  # which worker answered (`serve --workers N`)
            "offline": bool(runtime.offline),
            "sessions": sum(1 for c in calls if c.active),
        }
    )


def _modes(runtime: ServedHost) -> list[str]:
    """The dialogues a browser caller may pick (`dialogue.modes`), the default first."""
    return list(runtime.modes)


def _limits(runtime: ServedHost) -> BrowserLimits:
    cfg: Config = runtime.cfg
    return BrowserLimits(
        max_message_bytes=cfg.server.max_message_bytes,
        max_session_s=cfg.server.max_session_s,
        allowed_sample_rates=tuple(cfg.server.allowed_sample_rates),
        barge_in=bool(cfg.engine.for_channel("browser").barge_in),
        offline=bool(runtime.offline),
        modes=tuple(_modes(runtime)),
        default_mode=runtime.default_mode,
        messages_per_s=cfg.server.ws_messages_per_s,
    )


async def _call_ws(request: web.Request) -> web.StreamResponse:
    trusted, per_address = request.app[EDGE_KEY]
    client = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
    if not per_address.acquire(client):
        metrics.call_refused("browser", "rate_limited")
        log.warning("refusing a browser connection: too many from one address")
        raise web.HTTPTooManyRequests(text="too many connections from this address")
    try:
        return await _browser_call(request)
    finally:
        per_address.release(client)


async def _browser_call(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME_KEY]
    calls: set[BrowserCall] = request.app[CALLS_KEY]
    limits = _limits(runtime)
    ws = web.WebSocketResponse(
        max_msg_size=limits.hard_message_bytes,
        compress=False,  # PCM does not compress; deflate would only cost CPU
        heartbeat=20.0,
    )
    await ws.prepare(request)
    max_sessions = runtime.cfg.server.max_sessions
    # Calls of every channel count (browser, Voximplant, AudioSocket); so do browser
    # connections that have not sent `start` yet (they must within START_TIMEOUT_S).
    waiting = sum(1 for c in calls if c.session is None)
    if not runtime.has_capacity(pending=waiting, channel="browser"):
        log.warning("refusing a browser call: %d sessions already", max_sessions)
        await refuse_busy(ws, max_sessions)
        return ws
    call = BrowserCall(ws, request.app[FACTORY_KEY], limits)
    calls.add(call)
    try:
        await call.serve()
    finally:
        calls.discard(call)
        if call.session is not None:
            runtime.release_call(call.session)
    return ws


async def _end_calls(app: web.Application) -> None:
    calls = list(app[CALLS_KEY])
    if calls:
        log.info("ending %d browser call(s)", len(calls))
        await asyncio.gather(*(c.shutdown() for c in calls), return_exceptions=True)


# --- `voicebot serve` ----------------------------------------------------------------


def _apply_flags(cfg: Config, args: argparse.Namespace) -> None:
    if getattr(args, "host", None):
        cfg.server.host = args.host
    if getattr(args, "port", None) is not None:
        cfg.server.port = args.port
    if getattr(args, "audiosocket_port", None) is not None:
        cfg.telephony.audiosocket.port = args.audiosocket_port


AppFactory = Callable[["Runtime"], web.Application]


async def serve(args: argparse.Namespace, *, make_app: AppFactory | None = None) -> int:
    """`voicebot serve`: the runtime, the web app (`make_app`, default `create_app`),
    the AudioSocket server; runs until SIGINT/SIGTERM."""
    from voicebot.runtime import Runtime

    cfg = load_config(getattr(args, "config", None))
    _apply_flags(cfg, args)
    logs.configure(cfg.log_format, getattr(args, "log_level", None) or cfg.log_level)
    runtime = await Runtime.create(
        cfg,
        stt_script=getattr(args, "emulator_stt_script", None),
        store=getattr(args, "store", None),
        stt_provider=getattr(args, "stt", None),
    )
    log.debug("configuration: %s", runtime.redacted_config())
    if runtime.offline:
        script = getattr(args, "emulator_stt_script", None)
        log.warning(
            "OFFLINE demo: the page shows an offline banner; typed text works, and the "
            "microphone feeds the emulator, whose 'recognized' words come from %s.",
            f"the transcript script {script}" if script else "its (empty) transcript script",
        )
    app = (make_app or create_app)(runtime)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    audiosocket_server: AudioSocketServer | None = None
    metrics_runner: web.AppRunner | None = None
    lag = LoopLagMonitor()
    stop = _stop_event()
    loop = asyncio.get_running_loop()
    try:
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port, reuse_port=is_worker())
        await site.start()
        for sock in _bound_sockets(site):
            host, port = sock.getsockname()[:2]
            log.info("voicebot serving on http://%s:%d/", _url_host(host), port)
        audiosocket_server = await _start_audiosocket(runtime, cfg)
        metrics_runner = await _start_metrics_site(runtime, cfg)
        lag.start()
        if cfg.server.gc_freeze:
            gc.collect()
            gc.freeze()  # the runtime, catalog and modules are never garbage
        log.info("event loop: %s", type(loop).__module__)
        await stop.wait()
        # Drain before any listener closes: /readyz says 503 and every channel refuses
        # new calls while live ones finish; then no WebSocket is left to the runner.
        quick = stop.drain_s is not None
        counts = await drain(
            runtime.readiness,
            lambda: list(runtime.sessions.values()),
            runtime.clock,
            timeout_s=cfg.server.drain_timeout_s if not quick else 0.0,
            goodbye=None if quick else cfg.server.goodbye_message,
        )
        log.info("drained (%s); shutting down", counts)
    finally:
        await lag.stop()
        if audiosocket_server is not None:
            await audiosocket_server.aclose()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        await runtime.aclose()
    return 0


async def _start_audiosocket(
    runtime: ServedHost, cfg: Config, *, force: bool = False
) -> AudioSocketServer | None:
    if not (cfg.telephony.audiosocket.enabled or force):
        return None
    host, port = cfg.telephony.audiosocket.host, cfg.telephony.audiosocket.port
    server = await start_audiosocket(
        runtime, runtime.audiosocket_registry, host, port, reuse_port=is_worker()
    )
    for sock in server.sockets:
        log.info("AudioSocket listening on %s:%d", *sock.getsockname()[:2])
    return server


async def serve_audiosocket(args: argparse.Namespace) -> int:
    """`voicebot audiosocket`: only the AudioSocket server and its register endpoint.

    `--host/--port` are the AudioSocket listener's (default
    `telephony.audiosocket.*`); the register endpoint listens on `server.host:port`.
    """
    from voicebot.runtime import Runtime

    cfg = load_config(getattr(args, "config", None))
    acfg = cfg.telephony.audiosocket
    acfg.host = getattr(args, "host", None) or acfg.host
    if getattr(args, "port", None) is not None:
        acfg.port = args.port
    runtime = await Runtime.create(cfg, store=getattr(args, "store", None))
    app = web.Application()
    add_register_route(
        app,
        runtime.audiosocket_registry,
        secret=cfg.telephony.audiosocket.register_secret,
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    server: AudioSocketServer | None = None
    stop = _stop_event()
    try:
        server = await _start_audiosocket(runtime, cfg, force=True)
        await runner.setup()
        site = web.TCPSite(runner, cfg.server.host, cfg.server.port)
        await site.start()
        log.info(
            "register endpoint: http://%s:%d%s",
            _url_host(cfg.server.host),
            cfg.server.port,
            REGISTER_ROUTE,
        )
        await stop.wait()
    finally:
        if server is not None:
            await server.aclose()
        await runner.cleanup()
        await runtime.aclose()
    return 0


class StopSignal(asyncio.Event):
    """Set on SIGINT/SIGTERM; `signum` says which came first."""

    signum: int | None = None

    def receive(self, signum: int) -> None:
        """The signal handler: remember the first signal, then set the event."""
        if self.signum is None:
            self.signum = signum
        self.set()

    @property
    def drain_s(self) -> float | None:
        """How long live calls may go on: SIGTERM (a service manager, a deploy) drains
        for `server.drain_timeout_s` (None: the configured value); SIGINT (a person
        pressing Ctrl-C at the demo) ends them at once."""
        return 0.0 if self.signum == signal.SIGINT else None


def _stop_event() -> StopSignal:
    """Set on SIGINT/SIGTERM."""
    stop = StopSignal()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.receive, sig)
    return stop


async def _start_metrics_site(runtime: ServedHost, cfg: Config) -> web.AppRunner | None:
    """The token-less metrics site on `server.metrics_port`, loopback only."""
    if cfg.server.metrics_port <= 0:
        return None
    check_loopback(cfg.server.metrics_host)
    runner = web.AppRunner(
        metrics_app(runtime.turn_metrics, runtime.live_calls), handle_signals=False, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(
        runner, cfg.server.metrics_host, cfg.server.metrics_port, reuse_port=is_worker()
    )
    await site.start()
    log.info("metrics on http://%s:%d/metrics", cfg.server.metrics_host, cfg.server.metrics_port)
    return runner


def _bound_sockets(site: web.TCPSite) -> list[Any]:
    server = getattr(site, "_server", None)
    return list(getattr(server, "sockets", None) or [])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def loop_factory(setting: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop factory: uvloop's for `server.uvloop` auto (when installed) or
    on; None: asyncio's."""
    if setting == "off":
        return None
    try:
        import uvloop
    except ImportError:
        if setting == "on":
            raise RuntimeError("server.uvloop is on but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def run_cli(args: argparse.Namespace, *, make_app: AppFactory | None = None) -> int:
    """`voicebot serve` on the configured event loop (`server.uvloop`)."""
    cfg = load_config(getattr(args, "config", None))
    _apply_flags(cfg, args)
    workers = getattr(args, "workers", None) or cfg.server.workers
    if workers > 1 and not is_worker():
        logs.configure(cfg.log_format, getattr(args, "log_level", None) or cfg.log_level)
        args.workers = workers
        return supervise(cfg, args, getattr(args, "argv", []))
    with asyncio.Runner(loop_factory=loop_factory(cfg.server.uvloop)) as runner:
        return runner.run(serve(args, make_app=make_app))


def run_audiosocket_cli(args: argparse.Namespace) -> int:
    """`voicebot audiosocket --port P [--host H] [--config F] [--store URL]`."""
    cfg = load_config(getattr(args, "config", None))
    with asyncio.Runner(loop_factory=loop_factory(cfg.server.uvloop)) as runner:
        return runner.run(serve_audiosocket(args))
