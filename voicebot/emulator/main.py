"""Assembly of the local Yandex Cloud emulator (a TEST DOUBLE, not the real service).

Two grpc.aio servers (SpeechKit STT v3 and TTS v3, like the two real hosts) and one
aiohttp server (YandexGPT completion, IAM token exchange, admin routes), all sharing
one `EmulatorAuth`. Used in-process by tests and `simulate`, and as a process by
`voicebot emulator` for manual runs and the browser demo without cloud credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
from types import TracebackType
from typing import Any

import grpc
from aiohttp import web

from voicebot.config import EmulatorSettings, load_config
from voicebot.emulator.auth import EmulatorAuth
from voicebot.emulator.http import GptEmulator, build_app
from voicebot.emulator.iam import IamEmulator
from voicebot.emulator.tts import TtsServicer

log = logging.getLogger(__name__)

# With no key configured any non-empty `Api-Key` passes; this is the one we hand out.
ANY_KEY_PLACEHOLDER = "emulator-any-key"
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
_STOP_GRACE_S = 0.5


def _make_stt(settings: EmulatorSettings, auth: EmulatorAuth) -> tuple[Any, Any]:
    """H1's STT servicer and its registration function, or (None, None) if absent."""
    try:
        from voicebot.emulator import stt as stt_module
    except ModuleNotFoundError as exc:
        if exc.name != "voicebot.emulator.stt":
            raise
        log.warning("emulator: voicebot.emulator.stt is missing; STT is not served")
        return None, None
    return stt_module.SttServicer(settings, auth), stt_module.add_stt_service


class Emulator:
    """A local test double of Yandex SpeechKit STT/TTS v3, YandexGPT and IAM.

    Port 0 in the settings picks a free port. `stt`, `tts`, `gpt` and `iam` are the
    live service objects, for in-process scripting, fault injection and assertions.
    """

    def __init__(self, settings: EmulatorSettings, *, api_key: str | None = None) -> None:
        self.settings = settings
        self._api_key = api_key if api_key is not None else (settings.api_key or None)
        self.auth = EmulatorAuth(self._api_key)
        self.tts = TtsServicer(settings, self.auth)
        self.gpt = GptEmulator(settings, self.auth)
        self.iam = IamEmulator(settings, self.auth)
        self.stt, self._add_stt = _make_stt(settings, self.auth)
        self._stt_server: grpc.aio.Server | None = None
        self._tts_server: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._ports: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Emulator(stt={self._ports.get('stt')}, tts={self._ports.get('tts')}, http={self._ports.get('http')})"

    # ------------------------------------------------------------------ endpoints

    @property
    def api_key(self) -> str:
        """A key this emulator accepts (the configured one, else a placeholder)."""
        return self._api_key or ANY_KEY_PLACEHOLDER

    @property
    def stt_endpoint(self) -> str:
        """`host:port` of the SpeechKit STT emulator."""
        return f"{self.settings.host}:{self._port('stt')}"

    @property
    def tts_endpoint(self) -> str:
        """`host:port` of the SpeechKit TTS emulator."""
        return f"{self.settings.host}:{self._port('tts')}"

    @property
    def http_url(self) -> str:
        """Base URL of the REST side (YandexGPT, IAM, admin)."""
        return f"http://{self.settings.host}:{self._port('http')}"

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise RuntimeError("Emulator is not started")
        return self._ports[name]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start the gRPC and HTTP servers (ports 0: free ones); idempotent."""
        if self._ports:
            return
        host = self.settings.host
        try:
            self._stt_server = grpc.aio.server(options=_GRPC_OPTIONS)
            if self.stt is not None:
                self._add_stt(self._stt_server, self.stt)
            self._ports["stt"] = self._bind(self._stt_server, host, self.settings.stt_port)
            await self._stt_server.start()

            self._tts_server = grpc.aio.server(options=_GRPC_OPTIONS)
            from yandex.cloud.ai.tts.v3 import tts_service_pb2_grpc

            tts_service_pb2_grpc.add_SynthesizerServicer_to_server(self.tts, self._tts_server)
            self._ports["tts"] = self._bind(self._tts_server, host, self.settings.tts_port)
            await self._tts_server.start()

            app = build_app(self.gpt, self.iam, self.stt, self.tts)
            self._runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=_STOP_GRACE_S
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, host, self.settings.http_port)
            await site.start()
            self._ports["http"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        except BaseException:
            await self.stop()
            raise
        log.info(
            "emulator (test double) up: stt %s, tts %s, http %s",
            self.stt_endpoint,
            self.tts_endpoint,
            self.http_url,
        )

    @staticmethod
    def _bind(server: grpc.aio.Server, host: str, port: int) -> int:
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"cannot bind {host}:{port}")
        return bound

    async def stop(self) -> None:
        """Stop every server (bounded grace) and release hanging requests."""
        self.gpt.close()
        servers = [s for s in (self._stt_server, self._tts_server) if s is not None]
        self._stt_server = self._tts_server = None
        await asyncio.gather(*(s.stop(_STOP_GRACE_S) for s in servers))
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._ports.clear()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# ---------------------------------------------------------------------- CLI


def _write_key_file(path: str, key: dict[str, str]) -> None:
    """Private key material: created 0600 and never readable by others, even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(key, f, indent=2)


async def run_cli(args: argparse.Namespace) -> int:
    """`voicebot emulator`: serve until SIGINT/SIGTERM."""
    cfg = load_config(args.config)
    settings = dataclasses.replace(
        cfg.emulator,
        host=args.host,
        stt_port=args.stt_port,
        tts_port=args.tts_port,
        http_port=args.http_port,
    )
    if args.stt_script:
        settings.stt_script = args.stt_script
    emulator = Emulator(settings, api_key=args.api_key or None)
    await emulator.start()
    try:
        if args.write_sa_key:
            _write_key_file(args.write_sa_key, emulator.iam.create_sa_key())
        key_mode = "the configured API key" if emulator._api_key else "any non-empty API key"
        print("voicebot emulator: a local TEST DOUBLE of Yandex Cloud, not the real service")
        print(f"  STT v3 gRPC : {emulator.stt_endpoint}" + ("" if emulator.stt else " (no STT)"))
        print(f"  TTS v3 gRPC : {emulator.tts_endpoint}")
        print(f"  GPT + IAM   : {emulator.http_url}")
        print(f"  auth        : {key_mode}, or IAM tokens from {emulator.http_url}/iam/v1/tokens")
        if args.write_sa_key:
            print(f"  SA key file : {args.write_sa_key}")
        ready = {
            "stt": emulator.stt_endpoint,
            "tts": emulator.tts_endpoint,
            "http": emulator.http_url,
            "sa_key_file": args.write_sa_key or "",
        }
        print("EMULATOR_READY " + json.dumps(ready), flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await emulator.stop()
    return 0
