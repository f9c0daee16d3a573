"""A local fake of the Soniox real-time WebSocket API (a test double; see fakes.py).

Follows the documented protocol (research notes §3 and checklist §5.3): auth by
`Authorization: Bearer`, the `soniox-api-key, <key>` subprotocols, or the deprecated
`api_key` in the config; the first text frame is the config (no acknowledgement);
binary audio; each response carries new final tokens once plus the full non-final tail;
`<end>` after `max_endpoint_delay_ms` of silence with endpoint detection; `finalize` ->
finals then `<fin>`; `keepalive`; an empty frame -> last tokens, `finished: true`, close.
Idle close after `idle_timeout_s` (20 s) without audio or keepalive; the real error code
is undocumented, so 408 is used. Faults (`inject`): `http_<status>`, `drop` (TCP abort),
`503` ("Cannot continue request"), each after `after_ms` of audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection

from voicebot.emulator.fakes import (
    ConnectionStats,
    FakeServer,
    Fault,
    UtteranceTracker,
    recv_or_idle,
    script_cursor,
    should_fire,
)
from voicebot.emulator.scripts import ScriptRegistry

FORMATS = ("pcm_s16le",)


@dataclass
class SonioxFakeSettings:
    """Knobs of the Soniox fake: idle timeout (error 408) and the default endpoint delay."""

    idle_timeout_s: float = 20.0
    default_endpoint_ms: int = 1000


class FakeSoniox(FakeServer):
    """Soniox RT's wire protocol, locally (a test double): config first, tokens,
    `<end>`/`<fin>`, errors."""

    path = "/transcribe-websocket"

    def __init__(
        self,
        *,
        api_key: str = "",
        settings: SonioxFakeSettings | None = None,
        registry: ScriptRegistry | None = None,
    ) -> None:
        super().__init__(api_key=api_key, registry=registry)
        self.settings = settings or SonioxFakeSettings()
        self.configs: list[dict] = []
        self.control_messages: list[dict] = []

    def select_subprotocol(self, conn: ServerConnection, offered: list[str]) -> str | None:
        """No subprotocol."""
        return "soniox-api-key" if offered and offered[0] == "soniox-api-key" else None

    def _key(self, ws: ServerConnection, config: dict) -> str | None:
        auth = ws.request.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        protos = [
            p.strip() for p in ws.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        ]
        if len(protos) >= 2 and protos[0] == "soniox-api-key":
            return protos[1]
        return config.get("api_key")

    async def session(
        self, ws: ServerConnection, stats: ConnectionStats, fault: Fault | None
    ) -> None:
        """Serve one connection: read the config, then tokens from the script's lines."""
        s = self.settings

        async def error(code: int, message: str) -> None:
            stats.closed_by = str(code)
            await ws.send(json.dumps({"error_code": code, "error_message": message}))
            await ws.close(1000)

        first = await recv_or_idle(ws, s.idle_timeout_s)
        try:
            config = json.loads(first) if isinstance(first, str) else None
        except ValueError:
            config = None
        if not isinstance(config, dict):
            await error(400, "The first message must be a JSON configuration.")
            return
        self.configs.append(config)
        key = self._key(ws, config)
        if not key or (self.api_key and key != self.api_key):
            await error(401, "Invalid API key.")
            return
        if not config.get("model"):
            await error(400, "Missing model.")
            return
        fmt = config.get("audio_format")
        if fmt not in FORMATS or not config.get("sample_rate") or config.get("num_channels") != 1:
            await error(
                400, "Invalid audio format: pcm_s16le needs sample_rate and num_channels=1."
            )
            return
        endpoint = bool(config.get("enable_endpoint_detection"))
        pause = int(config.get("max_endpoint_delay_ms") or s.default_endpoint_ms)
        tr = UtteranceTracker(
            int(config["sample_rate"]),
            script_cursor(ws.request.headers, self.registry, self.script),
            pause_ms=pause,
        )

        def tokens_for(words: list[tuple[str, int, int]], final: bool) -> list[dict]:
            return [
                {
                    "text": (" " if i else "") + w,
                    "start_ms": a,
                    "end_ms": b,
                    "confidence": 0.95,
                    "is_final": final,
                }
                for i, (w, a, b) in enumerate(words)
            ]

        def tail() -> list[dict]:
            ws_ = tr.partial_words()
            return tokens_for(
                [
                    (w, tr.start_ms + i * tr.ms_per_word, tr.start_ms + (i + 1) * tr.ms_per_word)
                    for i, w in enumerate(ws_)
                ],
                False,
            )

        def final_ms() -> int:
            return tr.start_ms if tr.in_speech else tr.audio_ms

        async def respond(finals: list[dict], *, finished: bool = False) -> None:
            msg = {
                "tokens": finals + ([] if finished else tail()),
                "final_audio_proc_ms": final_ms(),
                "total_audio_proc_ms": tr.audio_ms,
            }
            if finished:
                msg["finished"] = True
            await ws.send(json.dumps(msg, ensure_ascii=False))

        def special(text: str, at: int) -> dict:
            return {"text": text, "start_ms": at, "end_ms": at, "confidence": 1.0, "is_final": True}

        while True:
            msg = await recv_or_idle(ws, s.idle_timeout_s)
            if msg is None:
                await error(408, "Request timeout: no audio or keepalive received.")
                return
            stats.messages_in += 1
            if isinstance(msg, str) and msg:
                try:
                    ctl = json.loads(msg)
                except ValueError:
                    await error(400, "Invalid control message.")
                    return
                self.control_messages.append(ctl)
                if ctl.get("type") == "finalize":
                    u = tr.end()
                    finals = tokens_for(u.words(), True) if u else []
                    await respond([*finals, special("<fin>", tr.audio_ms)])
                elif ctl.get("type") != "keepalive":
                    await error(400, f"Unknown message type {ctl.get('type')!r}.")
                    return
                continue
            if not msg:  # empty frame: end of stream
                u = tr.end()
                if u:
                    await respond(tokens_for(u.words(), True))
                await respond([], finished=True)
                stats.closed_by = "finished"
                await ws.close(1000)
                return
            finals: list[dict] = []
            for u in tr.feed(msg):
                finals += tokens_for(u.words(), True)
                if endpoint and u.text:
                    finals.append(special("<end>", u.end_ms))
            stats.audio_ms = tr.audio_ms
            await respond(finals)
            if should_fire(fault, tr.audio_ms, ("drop",)):
                stats.closed_by = "drop"
                ws.transport.abort()
                return
            if should_fire(fault, tr.audio_ms, ("503",)):
                await error(503, "Cannot continue request (code 1). Please restart the request.")
                return
