"""Local fake servers for the WebSocket STT vendors (test doubles, not recognizers).

Like the Yandex emulator, the fakes do not recognize speech: a real energy VAD finds
where the caller speaks and pauses, in audio time, and each detected utterance takes
the next text of a transcript script. Per connection the script comes from the header
`x-emulator-utterances-bin` (base64 of a UTF-8 JSON array, the way gRPC carries binary
metadata) or `x-emulator-utterances` (ASCII JSON), else the fake's global script;
`x-emulator-script-id` keeps the position across reconnects, and text is consumed only
when its final is sent, so an utterance cut off by a drop is replayed with the same text.

This module holds what the three fakes share, and `start_fakes()` to run all three.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from voicebot.emulator.scripts import ScriptCursor, ScriptRegistry, parse_utterances_bin
from voicebot.emulator.vad import EnergyVad
from voicebot.stt_options import OFFLINE_KEY, VendorOptions

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- scripts


def script_cursor(
    headers: Headers, registry: ScriptRegistry, default: Sequence[str]
) -> ScriptCursor:
    """The transcript for one connection, from its headers or the global script."""
    texts: Sequence[str] = default
    raw_bin = headers.get("x-emulator-utterances-bin")
    raw = headers.get("x-emulator-utterances")
    if raw_bin:
        texts = parse_utterances_bin(base64.b64decode(raw_bin))
    elif raw:
        texts = parse_utterances_bin(raw)
    return registry.cursor(texts, headers.get("x-emulator-script-id"))


# --------------------------------------------------------------------------- utterances


@dataclass
class Utterance:
    """One detected utterance with its script text; times in connection audio ms."""

    start_ms: int
    end_ms: int
    text: str

    def words(self) -> list[tuple[str, int, int]]:
        """The text's words spread evenly over the voiced span (plausible timestamps)."""
        ws = self.text.split()
        if not ws:
            return []
        step = max(1, (self.end_ms - self.start_ms) // len(ws))
        return [
            (w, self.start_ms + i * step, self.start_ms + (i + 1) * step) for i, w in enumerate(ws)
        ]


class UtteranceTracker:
    """Finds utterances in one connection's audio: speech starts at a voiced frame and
    ends once `pause_ms` of unvoiced audio follow; shorter than `min_voiced_ms` voiced
    is a blip (a cough, a click) and takes no text."""

    def __init__(
        self,
        sample_rate: int,
        cursor: ScriptCursor,
        *,
        pause_ms: int = 700,
        min_voiced_ms: int = 150,
        threshold_dbfs: float = -45.0,
        ms_per_word: int = 300,
    ) -> None:
        self.vad = EnergyVad(sample_rate, threshold_dbfs=threshold_dbfs, hangover_ms=0)
        self.cursor = cursor
        self.pause_ms = pause_ms
        self.min_voiced_ms = min_voiced_ms
        self.ms_per_word = ms_per_word
        self.frame_ms = self.vad.frame_ms
        self.rate = sample_rate
        self.in_speech = False
        self.start_ms = 0
        self.last_voiced_end = 0
        self.voiced_ms = 0
        self.audio_ms = 0

    def feed(self, pcm: bytes) -> list[Utterance]:
        """Feed audio; returns the utterances that ended in it."""
        frames = self.vad.feed(pcm)
        out: list[Utterance] = []
        t = frames.start_sample * 1000 // self.rate
        for v in frames.voiced:
            t_end = t + self.frame_ms
            if v:
                if not self.in_speech:
                    self.in_speech, self.start_ms, self.voiced_ms = True, t, 0
                self.voiced_ms += self.frame_ms
                self.last_voiced_end = t_end
            elif self.in_speech and t_end - self.last_voiced_end >= self.pause_ms:
                u = self.end()
                if u is not None:
                    out.append(u)
            t = t_end
        self.audio_ms = self.vad.received_samples * 1000 // self.rate
        return out

    def end(self) -> Utterance | None:
        """Close the utterance in progress now (finalize, commit, end of stream)."""
        if not self.in_speech:
            return None
        self.in_speech = False
        if self.voiced_ms < self.min_voiced_ms:
            return None
        text = self.cursor.peek() or ""
        self.cursor.consume()
        return Utterance(self.start_ms, self.last_voiced_end, text)

    def partial_words(self) -> list[str]:
        """The words of the utterance in progress revealed so far (never all of them)."""
        if not self.in_speech or self.voiced_ms < self.min_voiced_ms:
            return []
        words = (self.cursor.peek() or "").split()
        n = min(len(words) - 1, 1 + self.voiced_ms // self.ms_per_word)
        return words[: max(0, n)]


# --------------------------------------------------------------------------- faults and servers


@dataclass
class Fault:
    """A failure for one future connection. `after_ms`: of audio on that connection."""

    kind: str
    after_ms: int = 0
    arg: Any = None


@dataclass
class ConnectionStats:
    """What one fake connection saw: path, headers, audio, messages, how it ended."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    audio_ms: int = 0
    messages_in: int = 0
    closed_by: str = ""


class FakeServer:
    """A WebSocket server on 127.0.0.1:0 with a script, fault FIFO and counters."""

    path = "/"

    def __init__(
        self,
        *,
        api_key: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        registry: ScriptRegistry | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        # Share one registry with the Yandex emulator so a call switching provider
        # continues its script where it left off.
        self.registry = registry if registry is not None else ScriptRegistry()
        self.script: list[str] = []
        self.faults: list[Fault] = []
        self.refuse: str | None = None  # persistent failure mode for every new connection
        self.connections: list[ConnectionStats] = []
        self.active: set[ServerConnection] = set()
        self._server: Server | None = None

    # control -------------------------------------------------------------

    def set_script(self, texts: Sequence[str]) -> None:
        """The texts the next streams will "recognize", in order."""
        self.script = list(texts)

    def inject(self, kind: str, *, after_ms: int = 0, arg: Any = None) -> None:
        """Queue a fault for a later connection: `kind` after `after_ms` of its audio."""
        self.faults.append(Fault(kind, after_ms, arg))

    def fail_all(self, kind: str) -> None:
        """From now on refuse every connection with `kind`, and drop the live ones."""
        self.refuse = kind
        for ws in list(self.active):
            ws.transport.abort()

    def heal(self) -> None:
        """Stop refusing connections (after `fail_all`)."""
        self.refuse = None

    @property
    def url(self) -> str:
        """The fake's `ws://host:port/path`."""
        return f"ws://{self.host}:{self.port}{self.path}"

    # lifecycle ------------------------------------------------------------

    async def start(self) -> FakeServer:
        """Listen (port 0: a free one); returns self with `port` set."""
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            select_subprotocol=self.select_subprotocol,
            max_size=2**22,
            ping_interval=None,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and close live connections (bounded wait)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # hooks ----------------------------------------------------------------

    def select_subprotocol(self, conn: ServerConnection, offered: Sequence[str]) -> str | None:
        """The subprotocol to accept (default: none)."""
        return None

    def reject(self, conn: ServerConnection, request: Request) -> Response | None:
        """HTTP-level refusal of the upgrade, or None to accept."""
        return None

    async def session(
        self, ws: ServerConnection, stats: ConnectionStats, fault: Fault | None
    ) -> None:
        """Serve one accepted connection (the vendor's protocol)."""
        raise NotImplementedError

    # internals ------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != self.path:
            return conn.respond(404, "Not Found\n")
        fault = self.take_fault()
        conn._fake_fault = fault  # type: ignore[attr-defined]
        if fault is not None and fault.kind.startswith("http_"):
            return self.http_refusal(conn, int(fault.kind[5:]))
        return self.reject(conn, request)

    def http_refusal(self, conn: ServerConnection, status: int) -> Response:
        """An HTTP refusal of the upgrade with `status`."""
        return conn.respond(status, f"HTTP {status}\n")

    def take_fault(self) -> Fault | None:
        """The next connection's fault: the standing refusal, else the next queued one."""
        if self.refuse:
            return Fault(self.refuse)
        return self.faults.pop(0) if self.faults else None

    async def _handle(self, ws: ServerConnection) -> None:
        stats = ConnectionStats(
            path=ws.request.path if ws.request else "",
            headers={
                k.lower(): v for k, v in (ws.request.headers.raw_items() if ws.request else ())
            },
        )
        self.connections.append(stats)
        self.active.add(ws)
        fault = getattr(ws, "_fake_fault", None)
        try:
            await self.session(ws, stats, fault)
        except Exception as e:  # the peer went away mid-send, mostly
            log.debug("%s session ended: %r", type(self).__name__, e)
        finally:
            self.active.discard(ws)


def json_response(
    conn: ServerConnection, status: int, body: dict, headers: dict[str, str]
) -> Response:
    """An HTTP response with a JSON body and `headers`."""
    resp = conn.respond(status, json.dumps(body) + "\n")
    resp.headers["Content-Type"] = "application/json"
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


async def recv_or_idle(ws: ServerConnection, idle_s: float) -> str | bytes | None:
    """The next client frame, or None after `idle_s` without one (pings do not count)."""
    try:
        return await asyncio.wait_for(ws.recv(), idle_s)
    except TimeoutError:
        return None


def should_fire(fault: Fault | None, audio_ms: int, kinds: Sequence[str]) -> bool:
    """True when `fault` is one of `kinds` and its audio threshold is reached."""
    return fault is not None and fault.kind in kinds and audio_ms >= fault.after_ms


# --------------------------------------------------------------------------- all three


@dataclass
class FakeSet:
    """The three vendor fakes, started together (`start_fakes`)."""

    elevenlabs: Any
    deepgram: Any
    soniox: Any

    @property
    def urls(self) -> dict[str, str]:
        """Each fake's URL by vendor."""
        return {
            "elevenlabs": self.elevenlabs.url,
            "deepgram": self.deepgram.url,
            "soniox": self.soniox.url,
        }

    def set_script(self, texts: Sequence[str]) -> None:
        """Give all three the same script."""
        for f in (self.elevenlabs, self.deepgram, self.soniox):
            f.set_script(texts)

    async def stop(self) -> None:
        """Stop all three."""
        for f in (self.elevenlabs, self.deepgram, self.soniox):
            await f.stop()

    async def __aenter__(self) -> FakeSet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def make_fake(
    provider: str, *, api_key: str = "", registry: ScriptRegistry | None = None
) -> FakeServer:
    """An unstarted fake for `provider` (elevenlabs, deepgram or soniox)."""
    if provider == "elevenlabs":
        from voicebot.emulator.fake_elevenlabs import FakeElevenLabs

        return FakeElevenLabs(api_key=api_key, registry=registry)
    if provider == "deepgram":
        from voicebot.emulator.fake_deepgram import FakeDeepgram

        return FakeDeepgram(api_key=api_key, registry=registry)
    if provider == "soniox":
        from voicebot.emulator.fake_soniox import FakeSoniox

        return FakeSoniox(api_key=api_key, registry=registry)
    raise ValueError(f"no fake server for STT provider {provider!r}")


async def start_fakes(
    *,
    api_key: str = "",
    registry: ScriptRegistry | None = None,
    configure: Callable[[FakeSet], None] | None = None,
) -> FakeSet:
    """Start the ElevenLabs, Deepgram and Soniox fakes on free ports; `.urls` per provider.

    Pass the Yandex emulator's registry (`emulator.stt.scripts`) to share script positions.
    """
    registry = registry if registry is not None else ScriptRegistry()
    fakes = FakeSet(
        *(
            make_fake(p, api_key=api_key, registry=registry)
            for p in ("elevenlabs", "deepgram", "soniox")
        )
    )
    if configure is not None:
        configure(fakes)
    for f in (fakes.elevenlabs, fakes.deepgram, fakes.soniox):
        await f.start()
    return fakes


class VendorFakes:
    """The STT vendors offline: one local fake server per vendor (a test double),
    started on first use and sharing the emulator's transcript scripts, so
    `voicebot simulate --stt deepgram` works with no network. The runtime hands this to
    the provider registry (`registry.OfflineVendors`) and closes it."""

    def __init__(self, registry: ScriptRegistry | None, script: Sequence[str] = ()) -> None:
        self._registry = registry
        self._script = list(script)
        self.fakes: dict[str, FakeServer] = {}

    async def serve(self, name: str, options: VendorOptions) -> tuple[VendorOptions, FakeServer]:
        """Start `name`'s fake (once); options pointing at it, and the fake."""
        fake = self.fakes.get(name)
        if fake is None:
            fake = make_fake(name, registry=self._registry)
            fake.set_script(self._script)
            await fake.start()
            self.fakes[name] = fake
            log.warning(
                "STT %s runs OFFLINE on a local fake server (a test double) at %s", name, fake.url
            )
        return dataclasses.replace(options, url=fake.url, api_key=OFFLINE_KEY), fake

    async def aclose(self) -> None:
        """Stop every fake started."""
        fakes, self.fakes = list(self.fakes.values()), {}
        for fake in fakes:
            await fake.stop()
