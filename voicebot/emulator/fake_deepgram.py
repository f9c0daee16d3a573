"""A local fake of Deepgram Live `/v1/listen` (a test double; see fakes.py).

Follows the documented protocol (research notes §2 and checklist §5.2): auth by
`Authorization: Token|Bearer` or the `token, <key>` subprotocol; nothing sent on open;
binary audio; `Results` interims about once a second of audio, `is_final` spans,
`speech_final` after `endpointing` ms of silence, `UtteranceEnd` after
`utterance_end_ms` (only with `interim_results`), `SpeechStarted` with `vad_events`;
`KeepAlive`, `Finalize`, `CloseStream`; 1011 NET-0001 after 10 s without client frames,
1008 DATA-0000 for raw audio without `encoding`.
Quirks: `split_final` (an utterance finalised in two `is_final` pieces), `noisy` (never
`speech_final`, only `UtteranceEnd`). Faults (`inject`): `http_<status>`, `drop` (TCP
abort), `net0000` (1011 NET-0000), each after `after_ms` of audio.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from voicebot.emulator.fakes import (
    ConnectionStats,
    FakeServer,
    Fault,
    UtteranceTracker,
    json_response,
    recv_or_idle,
    script_cursor,
    should_fire,
)
from voicebot.emulator.scripts import ScriptRegistry

NET0001 = (
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001"
)
NET0000 = (
    "Deepgram did not provide a response message within the timeout window. "
    "See https://dpgr.am/net0000"
)


@dataclass
class DeepgramFakeSettings:
    """Knobs of the Deepgram fake: idle timeout (NET-0001), interim and silent-final
    cadence, quirks."""

    idle_timeout_s: float = 10.0  # NET-0001
    interim_every_ms: int = 1000
    silence_final_every_ms: int = 3000  # empty finals during silence, as the real one sends
    quirks: list[str] = field(default_factory=list)  # split_final, noisy


class FakeDeepgram(FakeServer):
    """Deepgram Live's wire protocol, locally (a test double): query parameters, results,
    errors, idle close."""

    path = "/v1/listen"

    def __init__(
        self,
        *,
        api_key: str = "",
        settings: DeepgramFakeSettings | None = None,
        registry: ScriptRegistry | None = None,
    ) -> None:
        super().__init__(api_key=api_key, registry=registry)
        self.settings = settings or DeepgramFakeSettings()
        self.control_messages: list[dict] = []

    # handshake -------------------------------------------------------------

    def select_subprotocol(self, conn: ServerConnection, offered: list[str]) -> str | None:
        """Accept Deepgram's `token` subprotocol (browser-style auth) when offered."""
        return "token" if offered and offered[0] == "token" else None

    def _key(self, request: Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            return value.strip()
        protos = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if len(protos) >= 2 and protos[0] == "token":
            return protos[1]
        return None

    def reject(self, conn: ServerConnection, request: Request) -> Response | None:
        """Refuse the upgrade like Deepgram: 401 for a bad key, 400 for bad parameters."""
        key = self._key(request)
        if key is None or (self.api_key and key != self.api_key):
            return self.http_refusal(conn, 401)
        return None

    def http_refusal(self, conn: ServerConnection, status: int) -> Response:
        """Deepgram's JSON error body with the `dg-error` header."""
        codes = {
            401: ("INVALID_AUTH", "Invalid credentials."),
            402: ("ASR_PAYMENT_REQUIRED", "Insufficient credits."),
            429: ("TOO_MANY_REQUESTS", "Too many requests."),
            400: ("Bad Request", "Bad request."),
        }
        code, msg = codes.get(status, ("INTERNAL", "Internal error."))
        rid = str(uuid.uuid4())
        body = {"err_code": code, "err_msg": msg, "request_id": rid}
        return json_response(conn, status, body, {"dg-error": msg, "dg-request-id": rid})

    # session ---------------------------------------------------------------

    async def session(
        self, ws: ServerConnection, stats: ConnectionStats, fault: Fault | None
    ) -> None:
        """Serve one connection: recognize the script's lines from the audio, send results."""
        s = self.settings
        q = {k: v[-1] for k, v in parse_qs(urlsplit(stats.path).query).items()}
        encoding = q.get("encoding")
        rate = int(q.get("sample_rate", "16000"))
        interim = q.get("interim_results", "false") == "true"
        ep = q.get("endpointing", "10")
        endpointing = None if ep == "false" else int(ep)
        ue_ms = int(q["utterance_end_ms"]) if "utterance_end_ms" in q and interim else None
        vad_events = q.get("vad_events", "false") == "true"
        noisy = "noisy" in s.quirks or endpointing is None
        pause = endpointing if endpointing is not None else (ue_ms or 1000)
        cursor = script_cursor(ws.request.headers, self.registry, self.script)
        tr = UtteranceTracker(rate, cursor, pause_ms=max(pause, 60))
        rid = str(uuid.uuid4())
        final_upto = 0
        words_sent = 0
        last_interim = 0
        ue_due: int | None = None
        ue_word_end = 0
        started = False

        async def results(
            start: int,
            end: int,
            words: list[tuple[str, int, int]],
            *,
            final: bool,
            speech_final: bool = False,
            from_finalize: bool = False,
        ) -> None:
            await ws.send(
                json.dumps(
                    {
                        "type": "Results",
                        "channel_index": [0, 1],
                        "duration": (end - start) / 1000,
                        "start": start / 1000,
                        "is_final": final,
                        "speech_final": speech_final,
                        "channel": {
                            "alternatives": [
                                {
                                    "transcript": " ".join(w for w, _, _ in words),
                                    "confidence": 0.98 if words else 0.0,
                                    "words": [
                                        {
                                            "word": w.lower(),
                                            "start": a / 1000,
                                            "end": b / 1000,
                                            "confidence": 0.97,
                                            "punctuated_word": w,
                                        }
                                        for w, a, b in words
                                    ],
                                }
                            ]
                        },
                        "metadata": {
                            "request_id": rid,
                            "model_info": {"name": "fake", "version": "0", "arch": "fake"},
                            "model_uuid": "00000000-0000-0000-0000-000000000000",
                        },
                        "from_finalize": from_finalize,
                    },
                    ensure_ascii=False,
                )
            )

        async def finish_utterance(
            u_words: list[tuple[str, int, int]],
            end: int,
            *,
            speech_final: bool,
            from_finalize: bool = False,
        ) -> None:
            nonlocal final_upto, words_sent, ue_due, ue_word_end
            rest = u_words[words_sent:]
            await results(
                final_upto,
                end,
                rest,
                final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
            )
            final_upto, words_sent = end, 0
            if ue_ms is not None and u_words:
                ue_word_end = u_words[-1][2]
                ue_due = ue_word_end + ue_ms

        async def close_stream() -> None:
            u = tr.end()
            if u is not None:
                await finish_utterance(u.words(), tr.audio_ms, speech_final=False)
            await ws.send(
                json.dumps(
                    {
                        "type": "Metadata",
                        "transaction_key": "deprecated",
                        "request_id": rid,
                        "sha256": "0" * 64,
                        "created": "2026-01-01T00:00:00.000Z",
                        "duration": tr.audio_ms / 1000,
                        "channels": 1,
                    }
                )
            )
            stats.closed_by = "CloseStream"
            await ws.close(1000)

        while True:
            msg = await recv_or_idle(ws, s.idle_timeout_s)
            if msg is None:
                stats.closed_by = "NET-0001"
                await ws.close(1011, NET0001)
                return
            stats.messages_in += 1
            if isinstance(msg, str):
                try:
                    ctl = json.loads(msg)
                    kind = ctl["type"]
                except (ValueError, KeyError, TypeError):
                    await ws.send(
                        json.dumps(
                            {
                                "type": "Error",
                                "variant": "SchemaError",
                                "description": "unparseable message",
                                "message": msg[:200],
                            }
                        )
                    )
                    continue
                self.control_messages.append(ctl)
                if kind == "KeepAlive":
                    continue
                if kind == "Finalize":
                    u = tr.end()
                    if u is not None:
                        await finish_utterance(
                            u.words(), tr.audio_ms, speech_final=False, from_finalize=True
                        )
                    continue
                if kind == "CloseStream":
                    await close_stream()
                    return
                await ws.send(
                    json.dumps(
                        {
                            "type": "Error",
                            "variant": "SchemaError",
                            "description": f"unknown type {kind}",
                            "message": msg[:200],
                        }
                    )
                )
                continue
            if not msg:  # legacy end of stream
                await close_stream()
                return
            if not encoding:
                stats.closed_by = "DATA-0000"
                await ws.close(1008, "DATA-0000")
                return
            for u in tr.feed(msg):
                await finish_utterance(u.words(), tr.audio_ms, speech_final=not noisy)
                started = False
            stats.audio_ms = tr.audio_ms
            now = tr.audio_ms
            if tr.in_speech and tr.voiced_ms >= tr.min_voiced_ms:
                ue_due = None
                if vad_events and not started:
                    await ws.send(
                        json.dumps(
                            {
                                "type": "SpeechStarted",
                                "channel": [0, 1],
                                "timestamp": tr.start_ms / 1000,
                            }
                        )
                    )
                started = True
                revealed = tr.partial_words()
                timed = [
                    (w, tr.start_ms + i * tr.ms_per_word, tr.start_ms + (i + 1) * tr.ms_per_word)
                    for i, w in enumerate(revealed)
                ]
                if (
                    "split_final" in s.quirks
                    and words_sent == 0
                    and len(revealed) >= 2
                    and tr.voiced_ms >= 1000
                ):
                    words_sent = len(revealed) // 2
                    await results(final_upto, now, timed[:words_sent], final=True)
                    final_upto = now
                    last_interim = now
                elif interim and now - last_interim >= s.interim_every_ms and timed[words_sent:]:
                    await results(final_upto, now, timed[words_sent:], final=False)
                    last_interim = now
            elif not tr.in_speech:
                if ue_due is not None and now >= ue_due:
                    await ws.send(
                        json.dumps(
                            {
                                "type": "UtteranceEnd",
                                "channel": [0, 1],
                                "last_word_end": ue_word_end / 1000,
                            }
                        )
                    )
                    ue_due = None
                elif now - final_upto >= s.silence_final_every_ms:
                    await results(final_upto, now, [], final=True, speech_final=True)
                    final_upto = now
            if should_fire(fault, now, ("drop",)):
                stats.closed_by = "drop"
                ws.transport.abort()
                return
            if should_fire(fault, now, ("net0000",)):
                stats.closed_by = "NET-0000"
                await ws.close(1011, NET0000)
                return
