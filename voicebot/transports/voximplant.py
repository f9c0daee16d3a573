"""Voximplant media WebSocket: the `/voximplant` endpoint of `voicebot serve`.

The wire codec is `voximplant_wire` (pure), pacing is `pacing.PacedSender`, the call
lifecycle is `telephony.TelephonyCall`; this module holds the transport, the
connection's read loop and the HTTP/auth handler. Routes are mounted by `server.py`.

A VoxEngine scenario (scripts/voximplant/voicebot.voxengine.js) opens a WebSocket to
us and streams the call with `start` / `media` / `stop` JSON; we answer on the same
socket with our own `start` / `media` / `stop` stream and `{"customEvent": ...}`
control messages (see docs/telephony.md and the research notes).

Wire facts this module is built around:
- encodings and their fixed rate: ULAW/ALAW/PCM8 are 8 kHz, PCM16 is 16 kHz. The
  call's transport runs at that rate, so recognition and synthesis use it directly
  and nothing is resampled. We never send "PCM16" with 8000 (Voximplant rejects it).
- `timestamp` counts samples, `chunk` counts frames; a jump in `chunk` is lost audio,
  replaced by silence so the recognizer's timeline stays true.
- Voximplant plays what we send at 1x and silently drops anything more than 10 s
  ahead, so we keep our lead under `telephony.voximplant.max_lead_ms` and estimate
  playout from what was sent and when (there are no acknowledgements).
- There is no clear in the media protocol: barge-in sends `{"customEvent":"clear"}`
  and the scenario calls `ws.clearMediaBuffer()`.

Error policy (documented in docs/telephony.md):
- no/wrong secret: HTTP 401 before the upgrade (403 when no secret is configured);
- a bad message (malformed JSON, bad base64, unknown event, media before start,
  wrong field types): logged, answered with `{"customEvent":"error","code":...}`,
  dropped; the call goes on. More than `MAX_BAD_MESSAGES` of them: close 1008;
- an encoding we cannot decode, or a rate change mid-call: close 1003;
- a binary frame: close 1003; a message over `server.max_message_bytes`: close 1009
  (aiohttp enforces it); no `start` within `START_TIMEOUT_S`: close 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from voicebot.clock import Clock, RealClock
from voicebot.config import VoximplantSettings
from voicebot.redact import mask_number
from voicebot.transports.base import receive_before
from voicebot.transports.host import CallHost
from voicebot.transports.pacing import PacedOutput, PacedSender
from voicebot.transports.telephony import HANGUP_DRAIN_CAP_S, CallStats, TelephonyCall
from voicebot.transports.voximplant_wire import (
    ControlOut,
    CustomEvent,
    Encoding,
    InboundDecoder,
    InboundEvent,
    MediaEvent,
    OutboundEncoder,
    OutboundMessage,
    ProtocolError,
    StartEvent,
    StopEvent,
    call_parameters,
    dtmf_digit,
    encode_outbound,
    reply_encoding,
)

log = logging.getLogger(__name__)

ROUTE = "/voximplant"
MAX_BAD_MESSAGES = 20
START_TIMEOUT_S = 15.0
PLAYBACK_IDLE_GRACE_S = 1.5  # a playback_idle this soon after our last send is stale


class VoxPlayout:
    """Playout = audio queued locally plus a 1x clock over what was actually sent."""

    clock_driven = True  # played_ms() follows the clock: its end can be slept towards

    def __init__(self, pacer: PacedSender) -> None:
        self._pacer = pacer

    def lead_ms(self) -> float:
        """How far the far end's buffer runs ahead of what it has played (ms)."""
        return self._pacer.lead_ms()

    def queued_ms(self) -> float:
        """Bot audio handed to the transport since the call began (ms)."""
        return self._pacer.sent_ms + self._pacer.pending_ms()

    def played_ms(self) -> float:
        """Bot audio the far end has played, by the 1x clock over what was sent (ms)."""
        return self._pacer.played_ms()

    def is_playing(self) -> bool:
        """Something queued or sent is not played yet (`played_ms() < queued_ms()`)."""
        return self._pacer.playing()


class VoximplantTransport(PacedOutput):
    """CallTransport over one Voximplant media WebSocket.

    Bot audio is cut into `chunk_ms` messages (Voximplant accepts any length and
    replays 20 ms frames itself) and sent as soon as the lead over real time allows
    (`max_lead_ms`; Voximplant drops anything more than 10 s ahead).
    `send_text` writes one text frame; `close` closes the socket.
    """

    def __init__(
        self,
        send_text: Callable[[str], Any],
        close: Callable[[], Any],
        encoding: Encoding,
        *,
        clock: Clock | None = None,
        max_lead_ms: float = 2000.0,
        chunk_ms: float = 20.0,
        hangup_margin_ms: float = 300.0,
    ) -> None:
        clock = clock or RealClock()
        self.hangup_margin_ms = float(hangup_margin_ms)
        self._send_text = send_text
        self._close = close
        self.encoder = OutboundEncoder(encoding)
        self.sample_rate = encoding.sample_rate
        self.max_lead_ms = float(max_lead_ms)
        self._clock = clock
        self.pacer = PacedSender(
            self._send_media,
            clock,
            sample_rate=self.sample_rate,
            max_lead_ms=max_lead_ms,
            on_sent=self._on_sent,
            name="voximplant-sender",
            frame_ms=chunk_ms,
        )
        self.playout = VoxPlayout(self.pacer)
        self.clears = 0
        self._last_send_at = float("-inf")

    async def open(self) -> None:
        """Send our stream's start, so the scenario's MEDIA_STARTED fires before audio."""
        await self._send(self.encoder.start())
        self.pacer.start()

    async def aclose(self) -> None:
        """Stop sending; the socket itself is closed by the call."""
        await self.pacer.aclose()

    async def play(self, pcm: bytes) -> None:
        """Queue bot audio (LINEAR16 at `sample_rate`)."""
        self.pacer.push(pcm)

    async def clear(self) -> None:
        """Barge-in: drop the queue and ask the scenario to clear Voximplant's buffer."""
        if self.closed:
            return
        async with self.pacer.lock:
            self.pacer.drop_queued()
            self.pacer.far_end_cleared()
            self.clears += 1
            await self._send_unlocked(ControlOut("clear"))

    async def hangup(self, reason: str) -> None:
        """Let what was already said reach the caller (the goodbye), then stop and close."""
        if self.closed:
            return
        await self.pacer.drain(self.playout.is_playing, HANGUP_DRAIN_CAP_S)
        # Our playout end is an estimate and the far end's jitter buffer plays a little
        # later: the goodbye's last syllable must not be cut by the hang-up.
        if self.hangup_margin_ms > 0:
            await self._clock.sleep(self.hangup_margin_ms / 1000)
        await self.aclose()
        with contextlib.suppress(Exception):
            async with self.pacer.lock:
                await self._send_unlocked(self.encoder.stop())
                await self._send_unlocked(ControlOut("hangup", {"reason": reason}))
        await self._close()

    async def send_event(self, event: Mapping[str, Any]) -> None:
        """The scenario needs audio and control only; transcripts stay server-side."""
        return None

    def playback_idle(self) -> None:
        """The scenario's MEDIA_ENDED: the far end has nothing left to play.

        It arrives about a second late; if we sent audio since, it speaks of an older
        reply and must not mark the new one as played."""
        if self._clock.monotonic() - self._last_send_at < PLAYBACK_IDLE_GRACE_S:
            return
        if not self.pacer.queue and self.pacer.lead_ms() > 0:
            self.pacer.far_end_cleared()

    async def _send(self, msg: OutboundMessage) -> None:
        async with self.pacer.lock:
            await self._send_unlocked(msg)

    async def _send_unlocked(self, msg: OutboundMessage) -> None:
        await self._send_text(encode_outbound(msg))

    async def _send_media(self, pcm: bytes) -> None:
        await self._send_unlocked(self.encoder.media(pcm))

    def _on_sent(self, nbytes: int) -> None:
        self._last_send_at = self._clock.monotonic()


def check_secret(request: web.Request, secret: str) -> bool:
    """`Authorization: Bearer <secret>` or `?token=<secret>`, in constant time."""
    offered = ""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        offered = auth[7:].strip()
    elif "token" in request.query:
        offered = request.query["token"]
    return bool(secret) and hmac.compare_digest(offered.encode(), secret.encode())


@dataclass
class VoximplantStats(CallStats):
    """A finished Voximplant call: media and error counters, the close code."""

    media_in: int = 0
    concealed_samples: int = 0
    chunk_restarts: int = 0
    bad_messages: int = 0
    close_code: int | None = None


class VoximplantCall(TelephonyCall):
    """One WebSocket connection: parse, open the call on `start`, clean up."""

    channel = "voximplant"
    stats: VoximplantStats

    def __init__(
        self,
        ws: web.WebSocketResponse,
        host: CallHost,
        settings: VoximplantSettings,
        query: Mapping[str, str],
    ) -> None:
        super().__init__(host, VoximplantStats())
        self.ws = ws
        self.settings = settings
        self.query = query
        self.decoder = InboundDecoder()
        self.transport: VoximplantTransport | None = None
        self.call_id = query.get("call", "")[:128] or f"vox-{uuid.uuid4().hex[:12]}"

    @property
    def label(self) -> str:
        """`voximplant <call id>` for logs."""
        return f"voximplant {self.call_id}"

    async def _send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    async def _close(self, code: int = WSCloseCode.OK, message: str = "") -> None:
        if self.stats.close_code is None:
            self.stats.close_code = code
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=message.encode()[:120])

    async def _error(self, err: ProtocolError) -> None:
        self.stats.bad_messages += 1
        self.stats.errors.append(err.code)
        log.warning("%s: %s (%s)", self.label, err.code, err)
        with contextlib.suppress(Exception):
            control = ControlOut("error", {"code": err.code, "message": str(err)})
            await self._send_text(encode_outbound(control))
        if err.close_code is not None:
            await self._close(err.close_code, err.code)
        elif self.stats.bad_messages > MAX_BAD_MESSAGES:
            await self._close(WSCloseCode.POLICY_VIOLATION, "too many bad messages")

    async def serve(self) -> VoximplantStats:
        """Run the connection to its end; a bug on our side ends this call only (1011)."""
        try:
            await self._read_loop()
        except Exception:
            log.exception("%s: internal error", self.label)
            self.stats.errors.append("internal")
            with contextlib.suppress(Exception):
                await self._close(WSCloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await self.finish()
        return self.stats

    async def _read_loop(self) -> None:
        start_deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        ws = self.ws
        while not ws.closed:
            # After the start, no deadline: the plain receive (this runs 50 times a second
            # per call, so the media path below makes no coroutine of its own either).
            if self.session is None:
                msg = await receive_before(ws, start_deadline)
            else:
                msg = await ws.receive()
            if msg is None:
                await self._error(
                    ProtocolError("no_start", "no start in time", WSCloseCode.POLICY_VIOLATION)
                )
                return
            if msg.type == WSMsgType.TEXT:
                try:
                    event = self.decoder.decode(msg.data)
                except ProtocolError as err:
                    await self._error(err)
                    continue
                if type(event) is MediaEvent:
                    self._on_media(event)
                else:
                    await self._on_event(event)
            elif msg.type == WSMsgType.BINARY:
                await self._error(
                    ProtocolError(
                        "binary_frame",
                        "binary frames are not part of the protocol",
                        WSCloseCode.UNSUPPORTED_DATA,
                    )
                )
            elif msg.type == WSMsgType.ERROR:
                self.stats.errors.append("ws_error")
                log.warning("%s: websocket error: %s", self.label, msg.data)
                self.stats.close_code = ws.close_code
                return
            else:  # CLOSE / CLOSING / CLOSED
                return

    def _on_media(self, event: MediaEvent) -> None:
        stats = self.stats
        stats.media_in += 1
        if event.concealed_samples:
            stats.concealed_samples += event.concealed_samples
        if event.restarted:
            stats.chunk_restarts += 1
            if stats.chunk_restarts == 1:
                log.warning("%s: media chunk numbering went back: a new run", self.label)
        if event.pcm and self.session is not None:
            self.session.feed_audio(event.pcm)

    async def _on_event(self, event: InboundEvent) -> None:
        if isinstance(event, StartEvent):
            await self._on_start(event)
        elif isinstance(event, StopEvent):
            log.info("%s: caller stream stopped", self.label)
        elif isinstance(event, CustomEvent):
            await self._on_custom(event)

    async def _on_start(self, event: StartEvent) -> None:
        if self.session is not None:
            log.info("%s: new caller stream (%s)", self.label, event.encoding.name)
            return
        out = reply_encoding(event.encoding, self.settings.encoding)
        transport = VoximplantTransport(
            self._send_text,
            lambda: self._close(WSCloseCode.OK, "hangup"),
            out,
            max_lead_ms=self.settings.max_lead_ms,
            hangup_margin_ms=self.settings.hangup_margin_ms,
            clock=self.host.clock,
            chunk_ms=self.settings.chunk_ms,
        )
        params = call_parameters(event.custom, self.query)
        log.info(
            "%s: call from %s to %s, %s %d Hz in, %s out",
            self.label,
            mask_number(params.caller_id),
            mask_number(params.called_id),
            event.encoding.name,
            event.encoding.sample_rate,
            out.name,
        )
        self.transport = transport
        # Our stream's start goes out before the session can say anything.
        await transport.open()
        self.open_session(
            transport,
            caller_id=params.caller_id,
            called_id=params.called_id,
            metadata=params.metadata,
            script=params.script,
            script_id=self.call_id,
        )

    async def _on_custom(self, event: CustomEvent) -> None:
        name = event.name
        if name == "dtmf":
            try:
                digit = dtmf_digit(event.data)
            except ProtocolError as err:
                await self._error(err)
                return
            if self.session is not None:
                self.session.feed_dtmf(digit)
        elif name == "hangup":
            log.info("%s: scenario reports hang-up", self.label)
            await self._close(WSCloseCode.OK, "hangup")
        elif name == "playback_idle":
            if self.transport is not None:
                self.transport.playback_idle()
        elif name in ("media_started", "media_ended"):
            log.debug("%s: %s", self.label, name)
        else:
            await self._error(ProtocolError("unknown_event", f"unknown customEvent {name[:40]!r}"))

    async def session_over(self, failed: bool) -> None:
        """The session ended: close the socket (1011 if it failed, else 1000)."""
        if failed:
            await self._close(WSCloseCode.INTERNAL_ERROR, "session failed")
        else:
            await self._close(WSCloseCode.OK, "call ended")

    async def close_connection(self) -> None:
        """Close the WebSocket (1000 unless a code was already chosen)."""
        await self._close(WSCloseCode.OK, "")
        log.info("%s: closed (code %s)", self.label, self.stats.close_code)


_ACTIVE: set[asyncio.Task[VoximplantStats]] = set()


def make_handler(
    host: CallHost,
    settings: VoximplantSettings,
    *,
    max_message_bytes: int,
    on_call: Callable[[VoximplantCall], None] | None = None,
) -> Callable[[web.Request], Any]:
    """The `GET /voximplant` handler: secret check, capacity, upgrade, one call task.

    Refusals: 403 when no secret is configured, 401 for a wrong one, 503 (Retry-After
    1) when every call slot is busy.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        secret = settings.secret
        if not secret:
            log.error(
                "voximplant: refusing a connection: no shared secret configured "
                "(set telephony.voximplant.secret or VOICEBOT_VOXIMPLANT_SECRET)"
            )
            raise web.HTTPForbidden(text="voximplant endpoint has no secret configured")
        if not check_secret(request, secret):
            log.warning("voximplant: refused a connection from %s: bad secret", request.remote)
            raise web.HTTPUnauthorized(
                text="bad or missing secret", headers={"WWW-Authenticate": "Bearer"}
            )
        if not host.has_capacity(channel="voximplant"):
            log.warning("voximplant: refusing a call: all slots busy")
            raise web.HTTPServiceUnavailable(text="busy", headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(
            protocols=("chat",), max_msg_size=max_message_bytes, autoping=True
        )
        await ws.prepare(request)
        call = VoximplantCall(ws, host, settings, dict(request.query))
        if on_call is not None:
            on_call(call)
        # aiohttp cancels the handler when the peer drops the connection; the call
        # runs in its own task so its cleanup (session end, sender stop) always completes.
        task = asyncio.create_task(call.serve(), name="voximplant-call")
        _ACTIVE.add(task)
        task.add_done_callback(_ACTIVE.discard)
        await asyncio.shield(task)
        return ws

    return handle
