"""Soniox real-time WebSocket API behind `SpeechRecognizer`.

Soniox streams tokens: each response carries the new final tokens (sent once, never
repeated) and then the whole current non-final tail, which replaces the previous tail.
Final tokens are collected until the `<end>` (endpoint detection) or `<fin>` (manual
finalize) special token, which becomes one `Final` plus `EndOfUtterance`. The key goes
in `Authorization: Bearer` (the config-message `api_key` is deprecated).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from voicebot.providers.base import (
    AuthError,
    EndOfUtterance,
    Final,
    Partial,
    ProviderError,
    RateLimitError,
    RecognitionOptions,
    Word,
)
from voicebot.providers.wsstream import Reconnect, WsRecognitionStream, header_pairs
from voicebot.stt_options import SONIOX_URL, SonioxSettings

log = logging.getLogger(__name__)

DEFAULT_URL = SONIOX_URL
SPECIAL = ("<end>", "<fin>")


class SonioxSTT:
    """`SpeechRecognizer` for Soniox RT."""

    name = "soniox"

    def __init__(self, settings: SonioxSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"SonioxSTT(url={self.settings.url!r}, model={self.settings.model!r})"

    async def open_stream(self, options: RecognitionOptions) -> SonioxStream:
        """A connected Soniox RT stream (one WebSocket, configuration sent)."""
        stream = SonioxStream(self.settings, options)
        stream.start()
        return stream

    async def aclose(self) -> None:
        """Nothing process-wide to close (each stream owns its socket)."""
        return None


def _words(tokens: list[dict]) -> list[Word]:
    """Tokens are sub-word pieces; a leading space starts a new word."""
    words: list[list[Any]] = []
    for t in tokens:
        text = t.get("text", "")
        if not words or text.startswith(" "):
            words.append(
                [text.strip(), t.get("start_ms", 0), t.get("end_ms", 0), [t.get("confidence")]]
            )
        else:
            w = words[-1]
            w[0] += text
            w[2] = t.get("end_ms", w[2])
            w[3].append(t.get("confidence"))
    out = []
    for text, s, e, confs in words:
        cs = [c for c in confs if c is not None]
        out.append(Word(text, int(s), int(e), min(cs) if cs else None))
    return out


class SonioxStream(WsRecognitionStream):
    """One Soniox RT connection: final tokens up to `<end>`/`<fin>` become one final and an
    end of utterance."""

    provider = "soniox"

    def __init__(self, settings: SonioxSettings, options: RecognitionOptions) -> None:
        super().__init__(options, settings.policy)
        self.settings = settings
        self._final_tokens: list[dict] = []  # stream-time ms, since the last end of utterance
        self._last_partial = ""

    def config(self) -> dict[str, Any]:
        """The first message: key, model, audio format, language hints, endpoint detection."""
        s, o = self.settings, self.options
        delay = s.max_endpoint_delay_ms if s.max_endpoint_delay_ms is not None else o.eou_pause_ms
        cfg: dict[str, Any] = {
            "model": s.model,
            "audio_format": "pcm_s16le",
            "sample_rate": o.sample_rate,
            "num_channels": 1,
            "language_hints": s.language_hints or [o.language.split("-")[0]],
            "enable_endpoint_detection": True,
            "enable_non_final_tokens": True,
            "max_endpoint_delay_ms": min(3000, max(500, delay)),
        }
        if s.context:
            cfg["context"] = s.context
        return cfg

    async def connect(self) -> ClientConnection:
        """Open the socket and send the configuration."""
        headers = [("Authorization", f"Bearer {self.settings.api_key}")]
        headers += header_pairs(self.options.metadata)
        ws = await connect(
            self.settings.url, additional_headers=headers, open_timeout=None, max_size=2**22
        )
        # No acknowledgement is documented: audio may follow the config at once.
        await ws.send(json.dumps(self.config()))
        return ws

    async def send_frame(self, ws: ClientConnection, pcm: bytes) -> None:
        """One binary frame of LINEAR16."""
        await ws.send(pcm)

    async def send_end(self, ws: ClientConnection) -> None:
        """An empty frame: the server finalizes and closes."""
        await ws.send("")  # an empty frame ends the stream

    async def finalize(self) -> None:
        """Finalize everything heard so far now (ends in a `<fin>` token)."""
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "finalize"}))

    def on_message(self, msg: str | bytes) -> bool:
        """Map one server message; True once `finished`; raises the mapped error for an
        error."""
        try:
            data = json.loads(msg)
        except ValueError:
            log.warning("soniox: unparseable message ignored")
            return False
        if "error_code" in data:
            raise self._error(data.get("error_code"), str(data.get("error_message", "")))
        tokens = data.get("tokens") or []
        tail: list[dict] = []
        for t in tokens:
            text = t.get("text", "")
            if not t.get("is_final"):
                tail.append(t)
            elif text in SPECIAL:
                self._end_utterance(self.stream_ms(t.get("end_ms") or 0))
            else:
                self._final_tokens.append(
                    {
                        **t,
                        "start_ms": self.stream_ms(t.get("start_ms", 0)),
                        "end_ms": self.stream_ms(t.get("end_ms", 0)),
                    }
                )
        if "final_audio_proc_ms" in data:
            self.trim_to_ms(self.stream_ms(data["final_audio_proc_ms"]))
        partial = "".join(t.get("text", "") for t in [*self._final_tokens, *tail]).strip()
        if partial and partial != self._last_partial:
            self._last_partial = partial
            self.emit(Partial(partial))
        return bool(data.get("finished"))

    def _end_utterance(self, time_ms: int) -> None:
        toks, self._final_tokens = self._final_tokens, []
        self._last_partial = ""
        text = "".join(t.get("text", "") for t in toks).strip()
        if not text:
            return  # a `<fin>` with nothing before it: no utterance
        words = tuple(_words(toks))
        start, end = toks[0]["start_ms"], toks[-1]["end_ms"]
        self.emit(Final(text, self.next_final_index(), start, end, words=words))
        self.emit(EndOfUtterance(max(time_ms, end)))

    def on_end(self) -> None:
        """Final tokens still waiting for an endpoint become a last utterance."""
        if self._final_tokens:
            self._end_utterance(self._final_tokens[-1]["end_ms"])

    def _error(self, code: Any, message: str) -> ProviderError:
        p = self.provider
        try:
            n = int(code)
        except (TypeError, ValueError):
            n = 0
        text = f"soniox: {n} {message}"
        if n in (401, 403):
            return AuthError(text, code=str(n), provider=p)
        if n == 402:
            return RateLimitError(text, code=str(n), retriable=False, provider=p)
        if n == 429:
            return RateLimitError(text, code=str(n), retriable=True, provider=p)
        if n == 408:  # idle close: nothing lost, reconnect when audio resumes
            return Reconnect(text, code=str(n), provider=p)
        return ProviderError(text, code=str(n), retriable=n >= 500 or n == 0, provider=p)
