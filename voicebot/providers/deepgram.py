"""Deepgram Live (`wss://api.deepgram.com/v1/listen`) behind `SpeechRecognizer`.

Deepgram finalises audio in pieces: each `is_final` result fixes only the span since
the previous one, and the utterance ends at `speech_final` or, as a backstop when noise
keeps the endpointer from firing, at `UtteranceEnd` (which needs `interim_results`).
So every non-empty `is_final` piece becomes a `Final`, and the first of `speech_final`,
`UtteranceEnd` or a `from_finalize` result after pieces becomes the `EndOfUtterance`.
The key goes in the `Authorization` header and never leaves the server process.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

from voicebot.providers.base import (
    EndOfUtterance,
    Final,
    Partial,
    ProviderError,
    RecognitionOptions,
    Word,
)
from voicebot.providers.wsstream import (
    Reconnect,
    WsRecognitionStream,
    header_pairs,
)
from voicebot.stt_options import DEEPGRAM_URL, DeepgramSettings

log = logging.getLogger(__name__)

DEFAULT_URL = DEEPGRAM_URL


class DeepgramSTT:
    """`SpeechRecognizer` for Deepgram Live."""

    name = "deepgram"

    def __init__(self, settings: DeepgramSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"DeepgramSTT(url={self.settings.url!r}, model={self.settings.model!r})"

    async def open_stream(self, options: RecognitionOptions) -> DeepgramStream:
        """A connected Deepgram Live stream (one WebSocket)."""
        stream = DeepgramStream(self.settings, options)
        stream.start()
        return stream

    async def aclose(self) -> None:
        """Nothing process-wide to close (each stream owns its socket)."""
        return None


class DeepgramStream(WsRecognitionStream):
    """One Deepgram Live connection: `is_final` pieces become finals, the first end signal
    an end of utterance."""

    provider = "deepgram"

    def __init__(self, settings: DeepgramSettings, options: RecognitionOptions) -> None:
        super().__init__(options, settings.policy)
        self.settings = settings
        self._pieces: list[str] = []  # non-empty finals since the last end of utterance
        self._last_word_end = 0.0  # connection seconds, any result's words

    def url(self) -> str:
        """The listen URL with the stream's query parameters (model, language, rate,
        endpointing...)."""
        s, o = self.settings, self.options
        params = {
            "model": s.model,
            "language": s.language or o.language.split("-")[0],
            "encoding": "linear16",
            "sample_rate": str(o.sample_rate),
            "channels": "1",
            "interim_results": "true",
            "endpointing": str(
                s.endpointing_ms if s.endpointing_ms is not None else o.eou_pause_ms
            ),
            "utterance_end_ms": str(max(1000, s.utterance_end_ms)),
            "vad_events": "true",
            "punctuate": str(s.punctuate).lower(),
            "smart_format": str(s.smart_format and o.normalize).lower(),
            **s.extra_params,
        }
        return f"{s.url}?{urlencode(params)}"

    async def connect(self) -> ClientConnection:
        """Open the socket (the 101 is Deepgram's readiness signal)."""
        headers = [("Authorization", f"Token {self.settings.api_key}")]
        headers += header_pairs(self.options.metadata)
        # Deepgram sends nothing on open: the 101 is the readiness signal.
        return await connect(
            self.url(), additional_headers=headers, open_timeout=None, max_size=2**22
        )

    async def send_frame(self, ws: ClientConnection, pcm: bytes) -> None:
        """One binary frame of LINEAR16 (never empty: that is the legacy close)."""
        await ws.send(pcm)  # binary; never an empty frame (that is the legacy close)

    async def send_end(self, ws: ClientConnection) -> None:
        """`CloseStream`: flush the last words, then the server closes."""
        await ws.send(json.dumps({"type": "CloseStream"}))

    async def finalize(self) -> None:
        """Flush buffered audio into finals now (client-side end of speech)."""
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "Finalize"}))

    def on_message(self, msg: str | bytes) -> bool:
        """Map one server message; True once the graceful end arrived."""
        try:
            data = json.loads(msg)
        except ValueError:
            log.warning("deepgram: unparseable message ignored")
            return False
        kind = data.get("type")
        if kind == "Results":
            self._on_results(data)
        elif kind == "UtteranceEnd":
            lwe = float(data.get("last_word_end") or 0.0)
            if self._pieces and lwe + 1e-3 >= self._last_word_end:
                self._end_utterance(self.stream_ms(lwe * 1000))
        elif kind == "Error":
            # A control message we sent was refused; the stream itself goes on.
            log.warning("deepgram: %s %s", data.get("variant"), data.get("description"))
        elif kind == "Metadata":
            return self._end_sent
        return False

    def _on_results(self, data: dict) -> None:
        alts = (data.get("channel") or {}).get("alternatives") or [{}]
        alt = alts[0]
        text = (alt.get("transcript") or "").strip()
        start = float(data.get("start") or 0.0)
        end = start + float(data.get("duration") or 0.0)
        words = tuple(
            Word(
                text=w.get("punctuated_word") or w.get("word", ""),
                start_ms=self.stream_ms(float(w.get("start", 0.0)) * 1000),
                end_ms=self.stream_ms(float(w.get("end", 0.0)) * 1000),
                confidence=w.get("confidence"),
            )
            for w in alt.get("words") or ()
        )
        if alt.get("words"):
            self._last_word_end = max(self._last_word_end, float(alt["words"][-1].get("end", 0.0)))
        start_ms, end_ms = self.stream_ms(start * 1000), self.stream_ms(end * 1000)
        # The span runs from the previous final and includes silence; the speech is
        # where its words are.
        s_ms, e_ms = (words[0].start_ms, words[-1].end_ms) if words else (start_ms, end_ms)
        if not data.get("is_final"):
            if text:
                self.emit(Partial(" ".join([*self._pieces, text]), s_ms, e_ms, words=words))
            return
        if text:
            self._pieces.append(text)
            self.emit(Final(text, self.next_final_index(), s_ms, e_ms, words=words))
        self.trim_to_ms(end_ms)  # the span is final, empty or not: never replay it
        if (data.get("speech_final") or data.get("from_finalize")) and self._pieces:
            self._end_utterance(end_ms)

    def _end_utterance(self, time_ms: int) -> None:
        self._pieces.clear()
        self.emit(EndOfUtterance(time_ms))

    def on_end(self) -> None:
        """Emit an end of utterance for finals still waiting for one."""
        if self._pieces:
            self._end_utterance(self.sent_ms)

    def close_error(self, code: int | None, reason: str) -> ProviderError | None:
        """1008 (undecodable audio) is fatal, NET-0001 an idle close (`Reconnect`), NET-0000
        retriable."""
        p = self.provider
        if code == 1008:  # DATA-0000: the audio cannot be decoded; retrying sends the same
            return ProviderError(f"deepgram: {reason or 'bad audio'}", code="DATA-0000", provider=p)
        if code == 1011 and "net0001" in reason.lower().replace("-", ""):
            # Idle close: nothing was lost; reconnect once the caller's audio resumes.
            return Reconnect(f"deepgram: idle close: {reason}", code="NET-0001", provider=p)
        if code == 1011:
            return ProviderError(f"deepgram: {reason}", code="NET-0000", retriable=True, provider=p)
        return super().close_error(code, reason)
