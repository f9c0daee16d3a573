"""Helpers for the SpeechKit STT tests: espeak-ng speech, an emulator server on loopback,
auth stand-ins for both sides."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np

from voicebot.config import EmulatorSettings
from voicebot.emulator.stt import SttServicer, add_stt_service
from voicebot.providers.base import ProviderError, RecognitionEvent
from voicebot.providers.yandex.stt import YandexRecognitionStream, YandexSTT

TEST_KEY = "test-key-123"

SpeechMaker = Callable[[str, int], bytes]


class KeyCheck:
    """Emulator-side stand-in for `EmulatorAuth`: accepts one API key or bearer token."""

    def __init__(self, accepted: str = f"Api-Key {TEST_KEY}") -> None:
        self.accepted = accepted
        self.seen: list[str | None] = []

    def check(self, authorization: str | None) -> bool:
        self.seen.append(authorization)
        return authorization == self.accepted


class TokenAuth:
    """Client-side `YandexAuth` that hands out tokens in order; `invalidate()` moves on."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.index = 0
        self.invalidations = 0

    async def headers(self) -> list[tuple[str, str]]:
        return [("authorization", self.tokens[min(self.index, len(self.tokens) - 1)])]

    async def invalidate(self) -> None:
        self.invalidations += 1
        self.index += 1

    async def aclose(self) -> None:
        return None


def speech_maker(root: Path) -> SpeechMaker:
    """`make(text, rate)`: espeak-ng Russian speech as LINEAR16 mono PCM, cached in `root`."""
    cache: dict[tuple[str, int], bytes] = {}

    def make(text: str, rate: int) -> bytes:
        key = (text, rate)
        if key not in cache:
            n = len(cache)
            wav = root / f"u{n}.wav"
            raw = root / f"u{n}_{rate}.raw"
            subprocess.run(["espeak-ng", "-v", "ru", "-w", str(wav), text], check=True)
            subprocess.run(
                ["sox", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                 "-t", "raw", str(raw)],
                check=True,
            )  # fmt: skip
            cache[key] = raw.read_bytes()
        return cache[key]

    return make


def silence(ms: int, rate: int) -> bytes:
    return bytes(2 * rate * ms // 1000)


def tone(ms: int, rate: int, freq: float = 440.0, amp: float = 8000.0) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


@asynccontextmanager
async def stt_server(
    settings: EmulatorSettings | None = None, auth: KeyCheck | None = None
) -> AsyncIterator[tuple[SttServicer, str]]:
    """The emulator servicer on 127.0.0.1:<free port>; yields (servicer, endpoint)."""
    servicer = SttServicer(settings or EmulatorSettings(), auth or KeyCheck())
    server = grpc.aio.server()
    add_stt_service(server, servicer)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@asynccontextmanager
async def stt_client(endpoint: str, auth: object | None = None) -> AsyncIterator[YandexSTT]:
    client = YandexSTT(endpoint, auth or TokenAuth(f"Api-Key {TEST_KEY}"), tls=False)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose()


async def feed(stream: YandexRecognitionStream, pcm: bytes, rate: int, chunk_ms: int = 100) -> None:
    step = 2 * rate * chunk_ms // 1000
    view = memoryview(pcm)
    for i in range(0, len(pcm), step):
        await stream.send_audio(bytes(view[i : i + step]))


async def collect(stream: YandexRecognitionStream) -> list[RecognitionEvent]:
    return [ev async for ev in stream]


async def collect_until_error(
    stream: YandexRecognitionStream,
) -> tuple[list[RecognitionEvent], ProviderError | None]:
    events: list[RecognitionEvent] = []
    try:
        async for ev in stream:
            events.append(ev)
    except ProviderError as e:
        return events, e
    return events, None
