"""A local fake of ElevenLabs Scribe Realtime (a test double; see fakes.py).

Follows the documented protocol (research notes §1 and checklist §5.1): query-string
config validated as the SDKs do (`invalid_request`, close 1008); `xi-api-key` or a
single-use `?token=` checked *after* the upgrade (`auth_error`, close 1000);
`session_started` first; base64 `input_audio_chunk`s; `previous_text` only on the first
chunk; commits under 0.3 s -> `commit_throttled`, close 1000 "commit_throttled"; VAD
commits after `vad_silence_threshold_secs` of silence, manual ones on `commit: true`
or after `auto_commit_s` of uncommitted audio; partials at ~1 Hz of audio starting
after 2 s of audio, identical re-sends included; on commit an echo partial, the
committed transcript, its `_with_timestamps` twin, and a stale post-commit echo.
Idle: after `idle_timeout_s` without audio, a bare close 1000 (or
`insufficient_audio_activity` first with `idle_error`). Faults (`inject`):
`http_<status>`, `drop`, `error:<message_type>` (any documented error type), each
after `after_ms` of audio. Quirk `twins_reversed`: the timestamped twin comes first.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection

from voicebot.emulator.fakes import (
    ConnectionStats,
    FakeServer,
    Fault,
    Utterance,
    UtteranceTracker,
    recv_or_idle,
    script_cursor,
    should_fire,
)
from voicebot.emulator.scripts import ScriptRegistry

FORMATS = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
    "ulaw_8000": 8000,
}
CLOSE_CODES = {"invalid_request": (1008, "invalid_request"), "auth_error": (1000, "")}


@dataclass
class ElevenLabsFakeSettings:
    """Knobs of the ElevenLabs fake: idle close, auto-commit, session limit, partial
    cadence, echoes."""

    idle_timeout_s: float = 10.0
    idle_error: bool = False  # send insufficient_audio_activity before the idle close
    auto_commit_s: float = 90.0  # manual mode
    max_session_s: float = 0.0  # 0: no limit; else session_time_limit_exceeded
    partials_after_ms: int = 2000
    partial_every_ms: int = 1000
    post_commit_echo: bool = True
    quirks: list[str] = field(default_factory=list)  # twins_reversed


def _bool(q: dict[str, str], key: str, default: bool) -> bool:
    return q.get(key, str(default).lower()) == "true"


class FakeElevenLabs(FakeServer):
    """ElevenLabs Scribe Realtime's wire protocol, locally (a test double): sessions,
    commits, errors."""

    path = "/v1/speech-to-text/realtime"

    def __init__(
        self,
        *,
        api_key: str = "",
        settings: ElevenLabsFakeSettings | None = None,
        registry: ScriptRegistry | None = None,
    ) -> None:
        super().__init__(api_key=api_key, registry=registry)
        self.settings = settings or ElevenLabsFakeSettings()
        self.tokens: set[str] = set()
        self.chunks: list[dict] = []  # every client message, audio elided

    def mint_token(self) -> str:
        """A single-use token, as `POST /v1/single-use-token/realtime_scribe` returns."""
        tok = "sutkn_" + secrets.token_hex(16)
        self.tokens.add(tok)
        return tok

    @staticmethod
    def validate(q: dict[str, str]) -> str | None:
        """The error type a query string deserves (bad model, format, strategy...), or None."""
        if not q.get("model_id"):
            return "model_id is required"
        if q.get("audio_format", "pcm_16000") not in FORMATS:
            return "audio_format is not supported"
        if q.get("commit_strategy", "manual") not in ("manual", "vad"):
            return "commit_strategy must be manual or vad"
        ranges = {
            "vad_silence_threshold_secs": (0.3, 3.0),
            "vad_threshold": (0.1, 0.9),
            "min_speech_duration_ms": (50, 2000),
            "min_silence_duration_ms": (50, 2000),
        }
        for key, (lo, hi) in ranges.items():
            if key in q:
                try:
                    v = float(q[key])
                except ValueError:
                    return f"{key} must be a number"
                if not lo <= v <= hi:
                    return f"{key} must be between {lo} and {hi}"
        if _bool(q, "filter_background_audio", False) and _bool(q, "include_timestamps", False):
            return "filter_background_audio cannot be combined with include_timestamps"
        return None

    async def session(
        self, ws: ServerConnection, stats: ConnectionStats, fault: Fault | None
    ) -> None:
        """Serve one session: `session_started`, partials and commits from the script,
        errors."""
        s = self.settings
        q = {k: v[-1] for k, v in parse_qs(urlsplit(stats.path).query).items()}

        async def fail(kind: str, text: str) -> None:
            code, reason = CLOSE_CODES.get(kind, (1000, kind))
            stats.closed_by = kind
            await ws.send(json.dumps({"message_type": kind, "error": text}))
            await ws.close(code, reason)

        problem = self.validate(q)
        if problem:
            await fail("invalid_request", problem)
            return
        key = ws.request.headers.get("xi-api-key")
        token = q.get("token")
        if token is not None:
            ok = token in self.tokens
            self.tokens.discard(token)  # consumed on use
        else:
            ok = bool(key) and (not self.api_key or key == self.api_key)
        if not ok:
            await fail("auth_error", "Invalid API key or token.")
            return
        fmt = q.get("audio_format", "pcm_16000")
        rate = FORMATS[fmt]
        vad = q.get("commit_strategy", "manual") == "vad"
        silence_s = float(q.get("vad_silence_threshold_secs", "1.5"))
        timestamps = _bool(q, "include_timestamps", False) or _bool(
            q, "include_language_detection", False
        )
        lang = q.get("language_code") or None
        await ws.send(
            json.dumps(
                {
                    "message_type": "session_started",
                    "session_id": uuid.uuid4().hex,
                    "config": {
                        "sample_rate": rate,
                        "audio_format": fmt,
                        "language_code": lang,
                        "timestamps_granularity": "word",
                        "vad_commit_strategy": vad,
                        "vad_silence_threshold_secs": silence_s,
                        "vad_threshold": float(q.get("vad_threshold", 0.4)),
                        "min_speech_duration_ms": int(q.get("min_speech_duration_ms", 100)),
                        "min_silence_duration_ms": int(q.get("min_silence_duration_ms", 100)),
                        "max_tokens_to_recompute": 5,
                        "model_id": q["model_id"],
                        "disable_logging": False,
                        "include_timestamps": _bool(q, "include_timestamps", False),
                        "include_language_detection": _bool(q, "include_language_detection", False),
                    },
                }
            )
        )
        cursor = script_cursor(ws.request.headers, self.registry, self.script)
        tr = UtteranceTracker(rate, cursor, pause_ms=int(silence_s * 1000) if vad else 700)
        segment: list[Utterance] = []  # ended but uncommitted (manual mode)
        uncommitted_ms = 0
        last_partial_at = 0
        n_chunks = 0

        def segment_text() -> str:
            return " ".join([*(u.text for u in segment if u.text), *tr.partial_words()]).strip()

        async def partial(text: str) -> None:
            await ws.send(
                json.dumps({"message_type": "partial_transcript", "text": text}, ensure_ascii=False)
            )

        async def commit(utts: list[Utterance]) -> None:
            nonlocal uncommitted_ms
            uncommitted_ms = 0
            text = " ".join(u.text for u in utts if u.text)
            words: list[dict] = []
            for u in utts:
                for w, a, b in u.words():
                    if words:
                        words.append(
                            {"text": " ", "start": a / 1000, "end": a / 1000, "type": "spacing"}
                        )
                    words.append(
                        {
                            "text": w,
                            "start": a / 1000,
                            "end": b / 1000,
                            "type": "word",
                            "logprob": -0.05,
                            "characters": list(w),
                        }
                    )
            plain = json.dumps(
                {"message_type": "committed_transcript", "text": text}, ensure_ascii=False
            )
            twin = json.dumps(
                {
                    "message_type": "committed_transcript_with_timestamps",
                    "text": text,
                    "language_code": lang,
                    "words": words,
                },
                ensure_ascii=False,
            )
            if text:
                await partial(text)  # the echo partial before the commit
            msgs = [plain] + ([twin] if timestamps else [])
            if "twins_reversed" in s.quirks:
                msgs.reverse()
            for m in msgs:
                await ws.send(m)
            if text and s.post_commit_echo:
                await partial(text)  # the stale echo after it

        while True:
            msg = await recv_or_idle(ws, s.idle_timeout_s)
            if msg is None:
                stats.closed_by = "idle"
                if s.idle_error:
                    await fail(
                        "insufficient_audio_activity", "You haven't sent enough audio activity."
                    )
                else:
                    await ws.close(1000)
                return
            stats.messages_in += 1
            try:
                data = json.loads(msg)
                if data.get("message_type") != "input_audio_chunk":
                    raise ValueError("unknown message_type")
                pcm = base64.b64decode(data["audio_base_64"] or b"", validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error) as e:
                await fail("input_error", f"Invalid message: {e}")
                return
            self.chunks.append({k: v for k, v in data.items() if k != "audio_base_64"})
            if data.get("previous_text") is not None and n_chunks > 0:
                await fail("input_error", "previous_text is only allowed on the first chunk.")
                return
            if data.get("sample_rate") not in (None, rate):
                await fail(
                    "input_error", f"sample_rate {data.get('sample_rate')} does not match {fmt}."
                )
                return
            n_chunks += 1
            chunk_ms = len(pcm) * 1000 // (2 * rate)
            uncommitted_ms += chunk_ms
            for u in tr.feed(pcm):
                if vad:
                    await commit([u])
                else:
                    segment.append(u)
            stats.audio_ms = tr.audio_ms
            if data.get("commit"):
                if uncommitted_ms < 300:
                    await fail(
                        "commit_throttled",
                        f"Commit request ignored: only {uncommitted_ms / 1000:.2f}s "
                        "of uncommitted audio. You need at least 0.3s of uncommitted audio before committing.",
                    )
                    return
                u = tr.end()
                await commit([*segment, *([u] if u else [])])
                segment.clear()
            elif not vad and uncommitted_ms >= s.auto_commit_s * 1000:
                u = tr.end()
                await commit([*segment, *([u] if u else [])])
                segment.clear()
            now = tr.audio_ms
            if now >= s.partials_after_ms and now - last_partial_at >= s.partial_every_ms:
                last_partial_at = now
                text = segment_text()
                if text:
                    await partial(text)
            if s.max_session_s and now >= s.max_session_s * 1000:
                await fail("session_time_limit_exceeded", "Maximum session time reached.")
                return
            if should_fire(fault, now, ("drop",)):
                stats.closed_by = "drop"
                ws.transport.abort()
                return
            if (
                fault is not None
                and fault.kind.startswith("error:")
                and should_fire(fault, now, (fault.kind,))
            ):
                await fail(fault.kind[6:], fault.arg or "Injected fault.")
                return
