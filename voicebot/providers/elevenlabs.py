"""ElevenLabs Scribe Realtime (`/v1/speech-to-text/realtime`) behind `SpeechRecognizer`.

Scribe has no segment ids and no revisions: a `partial_transcript` replaces the whole
current segment, and a commit (the server's VAD, by default here, or the client's
`commit: true`) fixes it for good. So each non-empty commit becomes one `Final`, with a
client-side `final_index`, followed by `EndOfUtterance`. With timestamps on, a commit
arrives twice (`committed_transcript`, then `..._with_timestamps`): the pair is merged
into one final, preferring the timestamped twin, with a short fallback for the plain one.
The stale 1 Hz partial re-sends and post-commit echoes are dropped. The protocol has no
keep-alive message, so silence is sent as audio; `session_started` is the readiness
signal, because a bad key is only reported after the upgrade succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from urllib.parse import urlencode

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
from voicebot.stt_options import ELEVENLABS_URL, ElevenLabsSettings

log = logging.getLogger(__name__)

DEFAULT_URL = ELEVENLABS_URL
FORMATS = {
    8000: "pcm_8000",
    16000: "pcm_16000",
    22050: "pcm_22050",
    24000: "pcm_24000",
    44100: "pcm_44100",
    48000: "pcm_48000",
}
MIN_COMMIT_S = 0.3  # a shorter commit is fatal (`commit_throttled`, then close)
PAD_COMMIT_S = 0.35


class ElevenLabsSTT:
    """`SpeechRecognizer` for ElevenLabs Scribe Realtime."""

    name = "elevenlabs"

    def __init__(self, settings: ElevenLabsSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"ElevenLabsSTT(url={self.settings.url!r}, model={self.settings.model_id!r})"

    async def open_stream(self, options: RecognitionOptions) -> ElevenLabsStream:
        """A connected Scribe Realtime stream (one WebSocket, `session_started` received)."""
        if options.sample_rate not in FORMATS:
            raise ProviderError(
                f"elevenlabs: unsupported sample rate {options.sample_rate}",
                code="BAD_RATE",
                provider="elevenlabs",
            )
        stream = ElevenLabsStream(self.settings, options)
        stream.start()
        return stream

    async def aclose(self) -> None:
        """Nothing process-wide to close (each stream owns its socket)."""
        return None


_FATAL_AUTH = {"auth_error", "unaccepted_terms", "unaccepted_terms_error"}
_QUOTA = {"quota_exceeded", "quota_exceeded_error"}
_BACKOFF = {"rate_limited", "queue_overflow", "resource_exhausted"}
_CLIENT_BUG = {"input_error", "chunk_size_exceeded", "invalid_request"}
ERROR_TYPES = (
    _FATAL_AUTH
    | _QUOTA
    | _BACKOFF
    | _CLIENT_BUG
    | {"session_time_limit_exceeded", "insufficient_audio_activity", "commit_throttled", "error"}
)


def map_error(kind: str, text: str) -> ProviderError:
    """Every documented Scribe error type onto the interface's error classes."""
    p = "elevenlabs"
    msg = f"elevenlabs: {kind}: {text}"
    if kind in _FATAL_AUTH:
        return AuthError(msg, code=kind, provider=p)
    if kind in _QUOTA:
        return RateLimitError(msg, code=kind, retriable=False, provider=p)
    if kind in _BACKOFF:
        return RateLimitError(msg, code=kind, retriable=True, provider=p)
    if kind == "session_time_limit_exceeded":  # a normal rollover: reconnect at once
        return Reconnect(msg, code=kind, provider=p)
    if kind == "insufficient_audio_activity":  # idle: reconnect when audio resumes
        return Reconnect(msg, code=kind, provider=p)
    if kind in _CLIENT_BUG:
        return ProviderError(msg, code=kind, retriable=False, provider=p)
    # commit_throttled (the replay re-sends the segment) and the generic `error`.
    return ProviderError(msg, code=kind, retriable=True, provider=p)


class ElevenLabsStream(WsRecognitionStream):
    """One Scribe Realtime connection: commits become finals and ends of utterance."""

    provider = "elevenlabs"
    max_chunk_ms = 500  # the docs recommend 0.1-1 s per chunk

    def __init__(self, settings: ElevenLabsSettings, options: RecognitionOptions) -> None:
        super().__init__(options, settings.policy)
        self.settings = settings
        self.session_id = ""
        self._last_partial = ""
        self._last_committed: str | None = None
        self._plain: tuple[str, asyncio.TimerHandle] | None = None
        self._orphan_twin: str | None = None
        self._commit_pos = 0  # absolute byte offset of the last commit point
        self._commit_marks: list[int] = []  # manual commits requested at these offsets
        self._awaiting = 0  # our commits not answered yet

    @property
    def vad_silence_s(self) -> float:
        """The VAD silence threshold (s): configured, or the pause hint, clamped to 0.3-3.0."""
        s = self.settings.vad_silence_threshold_secs
        return min(3.0, max(0.3, s if s is not None else self.options.eou_pause_ms / 1000))

    def url(self) -> str:
        """The realtime URL with the stream's query parameters (model, format, commit
        strategy, VAD...)."""
        s, o = self.settings, self.options
        params: list[tuple[str, str]] = [
            ("model_id", s.model_id),
            ("audio_format", FORMATS[o.sample_rate]),  # selects the decoder, not `sample_rate`
            ("commit_strategy", s.commit_strategy),
            ("language_code", s.language_code or o.language.split("-")[0]),
            ("include_timestamps", str(s.include_timestamps).lower()),
        ]
        if s.commit_strategy == "vad":
            params += [
                ("vad_silence_threshold_secs", f"{self.vad_silence_s:g}"),
                ("vad_threshold", f"{s.vad_threshold:g}"),
                ("min_speech_duration_ms", str(s.min_speech_duration_ms)),
                ("min_silence_duration_ms", str(s.min_silence_duration_ms)),
            ]
        params += [("keyterms", k) for k in s.keyterms]
        return f"{s.url}?{urlencode(params)}"

    async def connect(self) -> ClientConnection:
        """Open the socket and wait for `session_started`; an error message raises its
        mapped error."""
        headers = [("xi-api-key", self.settings.api_key), *header_pairs(self.options.metadata)]
        ws = await connect(
            self.url(), additional_headers=headers, open_timeout=None, max_size=2**22
        )
        try:
            first = json.loads(await ws.recv())
        except Exception:
            await ws.close()
            raise
        kind = first.get("message_type")
        if kind != "session_started":
            await ws.close()
            if kind in ERROR_TYPES:
                raise map_error(kind, str(first.get("error", "")))
            raise ProviderError(
                f"elevenlabs: unexpected first message {kind!r}",
                code="PROTOCOL",
                retriable=True,
                provider=self.provider,
            )
        self.session_id = str(first.get("session_id", ""))
        return ws

    def _chunk(self, pcm: bytes, commit: bool) -> str:
        msg = {
            "message_type": "input_audio_chunk",
            "audio_base_64": base64.b64encode(pcm).decode("ascii"),
            "commit": commit,
            "sample_rate": self.rate,
        }
        return json.dumps(msg, ensure_ascii=False)

    async def send_frame(self, ws: ClientConnection, pcm: bytes) -> None:
        """One `input_audio_chunk` (base64 PCM), committing where a manual commit was asked."""
        commit = bool(self._commit_marks) and self._commit_marks[0] <= self._conn_sent
        if commit:
            self._commit_marks = [m for m in self._commit_marks if m > self._conn_sent]
            self._commit_pos = self._conn_sent
            self._awaiting += 1
        await ws.send(self._chunk(pcm, commit))

    async def commit(self) -> None:
        """Manual commit of everything sent so far, padded to the 0.3 s minimum."""
        uncommitted = self.ms_for_bytes(self._total - max(self._commit_pos, self._covered)) / 1000
        if uncommitted < PAD_COMMIT_S:
            self.inject_silence(round((PAD_COMMIT_S - uncommitted) * 1000) + 20)
        self._commit_marks.append(self._total)
        self._wake.set()

    async def send_end(self, ws: ClientConnection) -> None:
        """A final commit of what is not committed yet (padded to the 0.3 s minimum)."""
        uncommitted = self.ms_for_bytes(self._conn_sent - self._commit_pos) / 1000
        if uncommitted <= 0 and not self._commit_marks:
            return
        pad = max(0.0, PAD_COMMIT_S - uncommitted) + 0.02 if uncommitted < PAD_COMMIT_S else 0.0
        self._commit_marks.clear()
        self._awaiting += 1
        await ws.send(self._chunk(bytes(self.bytes_for_ms(pad * 1000)), True))

    def end_done(self) -> bool:
        """True when every commit we sent was answered."""
        return self._awaiting <= 0 and self._plain is None

    def on_message(self, msg: str | bytes) -> bool:
        """Map one server message; raises the mapped error for an error message."""
        try:
            data = json.loads(msg)
        except ValueError:
            log.warning("elevenlabs: unparseable message ignored")
            return False
        kind = data.get("message_type")
        if kind == "partial_transcript":
            self._on_partial(str(data.get("text") or ""))
        elif kind == "committed_transcript":
            self._on_plain(str(data.get("text") or ""))
        elif kind == "committed_transcript_with_timestamps":
            self._on_twin(str(data.get("text") or ""), data.get("words") or [])
        elif kind in ERROR_TYPES:
            raise map_error(kind, str(data.get("error", "")))
        # session_started, final_transcript*, entities and unknown types: informational.
        return self._end_sent and self.end_done()

    # partials -----------------------------------------------------------------

    def _on_partial(self, text: str) -> None:
        text = text.strip()
        if not text or text == self._last_partial:
            return  # the 1 Hz re-send of an unchanged hypothesis
        if text == self._last_committed:
            return  # a stale echo of what was just committed
        self._last_committed = None  # genuinely new speech: a repeated "да" is heard again
        self._last_partial = text
        self.emit(Partial(text))

    # commits ------------------------------------------------------------------

    def _on_plain(self, text: str) -> None:
        if not (self.settings.include_timestamps):
            self._commit(text, [])
            return
        if self._orphan_twin is not None and self._orphan_twin == text:
            self._orphan_twin = None  # its twin arrived first and was used
            return
        self._cancel_plain(emit=True)
        handle = asyncio.get_running_loop().call_later(
            self.settings.twin_timeout_s, self._plain_timeout
        )
        self._plain = (text, handle)

    def _plain_timeout(self) -> None:
        if self._plain is not None:
            text, _ = self._plain
            self._plain = None
            self._commit(text, [])

    def _cancel_plain(self, *, emit: bool) -> None:
        if self._plain is not None:
            text, handle = self._plain
            handle.cancel()
            self._plain = None
            if emit:
                self._commit(text, [])

    def _on_twin(self, text: str, words: list[dict]) -> None:
        if self._plain is not None:
            self._plain[1].cancel()
            self._plain = None
        else:
            self._orphan_twin = text  # the plain one may still come: drop it then
        self._commit(text, words)

    def _commit(self, text: str, raw_words: list[dict]) -> None:
        self._awaiting = max(0, self._awaiting - 1)
        text = text.strip()
        words = tuple(
            Word(
                str(w.get("text", "")).strip(),
                self.stream_ms(float(w.get("start") or 0) * 1000),
                self.stream_ms(float(w.get("end") or 0) * 1000),
                _confidence(w.get("logprob")),
            )
            for w in raw_words
            if w.get("type", "word") == "word"
        )
        if words:
            end = words[-1].end_ms
            self.trim_to_ms(end)
        else:
            # No times: the commit covers audio up to about a VAD pause ago.
            end = max(
                self.ms_for_bytes(self._commit_pos), self.sent_ms - int(self.vad_silence_s * 500)
            )
            self.trim_to_ms(end)
        self._commit_pos = max(self._commit_pos, self.bytes_for_ms(end))
        self._last_partial = ""
        if not text:
            return  # a committed silence
        self._last_committed = text
        start = words[0].start_ms if words else end
        self.emit(Final(text, self.next_final_index(), start, end, words=words))
        self.emit(EndOfUtterance(end if words else self.sent_ms))

    def on_end(self) -> None:
        """A plain commit still waiting for its timestamped twin is emitted."""
        self._cancel_plain(emit=True)

    def close_error(self, code: int | None, reason: str) -> ProviderError | None:
        """A bare 1000 close is an idle close (`Reconnect`); an error type in the reason
        maps to its error."""
        if code == 1000 and not reason:
            # The server idles a session out with a bare normal close.
            return Reconnect(
                "elevenlabs: closed by server (idle)", code="IDLE_CLOSE", provider=self.provider
            )
        if reason in ERROR_TYPES:
            return map_error(reason, "connection closed")
        return super().close_error(code, reason)


def _confidence(logprob: object) -> float | None:
    if isinstance(logprob, (int, float)):
        return math.exp(min(0.0, float(logprob)))
    return None
