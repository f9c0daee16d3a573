"""SpeechKit TTS v3 `UtteranceSynthesis` of the emulator (a test double).

Speaks the real gRPC protocol with the `yandexcloud` generated servicer, validates the
way the real service does (250-character limit, voice/role table, sample rates, auth),
and streams real espeak-ng speech in `tts_chunk_ms` chunks after `tts_ttfb_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from yandex.cloud.ai.tts.v3 import tts_pb2, tts_service_pb2_grpc

from voicebot.config import EmulatorSettings
from voicebot.emulator.auth import EmulatorAuth
from voicebot.emulator.espeak import EspeakSynthesizer, SynthesisFailed, wav_header

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 250
MAX_UNSAFE_TEXT_CHARS = 5000
DEFAULT_VOICE = "marina"
DEFAULT_CONTAINER_RATE = 22050
MIN_RATE, MAX_RATE = 8000, 48000


@dataclass(frozen=True, slots=True)
class Voice:
    """A SpeechKit voice of the emulator: its gender (for espeak-ng) and roles (the first is
    the default)."""

    female: bool
    roles: tuple[str, ...]  # first one is the default role; empty: the voice has no roles


# ru-RU voices and roles (yandex-research.md §3, from the SpeechKit voices page).
VOICES: dict[str, Voice] = {
    "alena": Voice(True, ("neutral", "good")),
    "filipp": Voice(False, ()),
    "ermil": Voice(False, ("neutral", "good")),
    "jane": Voice(True, ("neutral", "good", "evil")),
    "omazh": Voice(True, ("neutral", "evil")),
    "zahar": Voice(False, ("neutral", "good")),
    "dasha": Voice(True, ("neutral", "good", "friendly")),
    "julia": Voice(True, ("neutral", "strict")),
    "lera": Voice(True, ("neutral", "friendly")),
    "masha": Voice(True, ("good", "strict", "friendly")),
    "marina": Voice(True, ("neutral", "whisper", "friendly")),
    "alexander": Voice(False, ("neutral", "good")),
    "kirill": Voice(False, ("neutral", "strict", "good")),
    "anton": Voice(False, ("neutral", "good")),
    "madi_ru": Voice(False, ()),
    "saule_ru": Voice(True, ("neutral", "strict", "whisper")),
    "zamira_ru": Voice(True, ("neutral", "strict", "friendly")),
    "zhanar_ru": Voice(True, ("neutral", "strict", "friendly")),
    "yulduz_ru": Voice(True, ("neutral", "strict", "friendly", "whisper")),
}


@dataclass(frozen=True, slots=True)
class TtsRequest:
    """What one authenticated UtteranceSynthesis call asked for (tests assert on it)."""

    text: str
    voice: str
    role: str | None
    speed: float | None
    sample_rate: int
    container: str  # "raw" or "wav"
    unsafe_mode: bool
    client_request_id: str
    outcome: str  # "OK" or the gRPC status name it ended with


class _Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Plan:
    text: str
    voice: str
    role: str | None
    speed: float | None
    sample_rate: int
    wav: bool


def _render_template(template: tts_pb2.TextTemplate) -> str:
    text = template.text_template
    for var in template.variables:
        text = text.replace("{" + var.variable_name + "}", var.variable_value)
    return text


def _plan(request: tts_pb2.UtteranceSynthesisRequest) -> _Plan:
    """Validate a request like the real service; raise _Rejected with its status."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    kind = request.WhichOneof("Utterance")
    if kind == "text_template":
        text = _render_template(request.text_template)
    else:
        text = request.text
    if not text.strip():
        raise _Rejected(invalid, "Text is empty")
    limit = MAX_UNSAFE_TEXT_CHARS if request.unsafe_mode else MAX_TEXT_CHARS
    if len(text) > limit:
        raise _Rejected(invalid, f"Too long text: {len(text)} characters, the limit is {limit}")

    voice, role, speed = DEFAULT_VOICE, None, None
    for hint in request.hints:
        which = hint.WhichOneof("Hint")
        if which == "voice":
            voice = hint.voice
        elif which == "role":
            role = hint.role
        elif which == "speed":
            speed = hint.speed
            if not 0.1 <= speed <= 3.0:
                raise _Rejected(invalid, f"Speed {speed} is out of range [0.1; 3.0]")
        elif which == "volume":
            vol = hint.volume
            lufs = request.loudness_normalization_type != tts_pb2.UtteranceSynthesisRequest.MAX_PEAK
            if (lufs and not -145 <= vol < 0) or (not lufs and not 0 < vol <= 1):
                raise _Rejected(invalid, f"Volume {vol} is out of range")
        elif which == "pitch_shift":
            if not -1000 <= hint.pitch_shift <= 1000:
                raise _Rejected(invalid, "Pitch shift is out of range [-1000; 1000]")
        elif which in ("audio_template", "duration"):
            raise _Rejected(grpc.StatusCode.UNIMPLEMENTED, f"The emulator does not support {which}")
    spec = VOICES.get(voice)
    if spec is None:
        raise _Rejected(invalid, f"Unknown voice: {voice}")
    if role and role not in spec.roles:
        raise _Rejected(invalid, f"Voice {voice} has no role {role}")

    fmt = request.output_audio_spec
    which_fmt = fmt.WhichOneof("AudioFormat")
    if which_fmt == "raw_audio":
        if fmt.raw_audio.audio_encoding != tts_pb2.RawAudio.LINEAR16_PCM:
            raise _Rejected(invalid, "Unsupported audio encoding: only LINEAR16_PCM")
        rate = fmt.raw_audio.sample_rate_hertz
        if not MIN_RATE <= rate <= MAX_RATE:
            raise _Rejected(invalid, f"Sample rate {rate} is out of range [8000; 48000]")
        return _Plan(text, voice, role, speed, int(rate), wav=False)
    if which_fmt == "container_audio":
        ctype = fmt.container_audio.container_audio_type
        if ctype != tts_pb2.ContainerAudio.WAV:
            name = tts_pb2.ContainerAudio.ContainerAudioType.Name(ctype)
            raise _Rejected(
                grpc.StatusCode.UNIMPLEMENTED, f"The emulator supports WAV only: {name}"
            )
    return _Plan(text, voice, role, speed, DEFAULT_CONTAINER_RATE, wav=True)


_SENTENCE_END = re.compile(r"[.!?…]\s")


def _ready_text(buffer: str, *, force: bool) -> tuple[str, str]:
    """(text to speak now, text kept): up to the last sentence end, or all when forced."""
    if force:
        return buffer, ""
    ends = list(_SENTENCE_END.finditer(buffer))
    if not ends:
        return "", buffer
    cut = ends[-1].end()
    return buffer[:cut], buffer[cut:]


def _utterance_request(options: tts_pb2.SynthesisOptions) -> tts_pb2.UtteranceSynthesisRequest:
    """StreamSynthesis options expressed as the equivalent UtteranceSynthesis request."""
    hints = []
    if options.voice:
        hints.append(tts_pb2.Hints(voice=options.voice))
    if options.role:
        hints.append(tts_pb2.Hints(role=options.role))
    if options.speed:
        hints.append(tts_pb2.Hints(speed=options.speed))
    if options.pitch_shift:
        hints.append(tts_pb2.Hints(pitch_shift=options.pitch_shift))
    request = tts_pb2.UtteranceSynthesisRequest(
        text=".",
        hints=hints,
        loudness_normalization_type=int(options.loudness_normalization_type),
    )
    if options.HasField("output_audio_spec"):
        request.output_audio_spec.CopyFrom(options.output_audio_spec)
    return request


class TtsServicer(tts_service_pb2_grpc.SynthesizerServicer):
    """Synthesizer of the emulator. `requests` and `inject()` are for tests."""

    def __init__(
        self,
        settings: EmulatorSettings,
        auth: EmulatorAuth,
        *,
        synthesizer: EspeakSynthesizer | None = None,
    ) -> None:
        self._settings = settings
        self._auth = auth
        self.synth = synthesizer or EspeakSynthesizer()
        self.requests: list[TtsRequest] = []
        self._faults: deque[str] = deque()

    def inject(self, *faults: str) -> None:
        """Queue faults for the next calls: gRPC status names (e.g. "UNAVAILABLE",
        "RESOURCE_EXHAUSTED") or "hang" (never answers until the client gives up)."""
        for fault in faults:
            if fault != "hang" and fault.upper() not in grpc.StatusCode.__members__:
                raise ValueError(f"unknown TTS fault {fault!r}")
            self._faults.append(fault)

    async def UtteranceSynthesis(
        self, request: tts_pb2.UtteranceSynthesisRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.UtteranceSynthesisResponse]:
        """`UtteranceSynthesis`: raw LINEAR16 at the requested rate, streamed in chunks;
        hints validated."""
        metadata = dict(context.invocation_metadata() or ())
        if not self._auth.check(metadata.get("authorization")):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unknown api key or IAM token")
        started = time.monotonic()
        request_id = str(metadata.get("x-client-request-id", ""))
        try:
            plan = _plan(request)
        except _Rejected as exc:
            self._log(request, None, request_id, exc.code.name)
            await context.abort(exc.code, str(exc))
        if self._faults:
            fault = self._faults.popleft()
            self._log(request, plan, request_id, fault.upper())
            if fault == "hang":
                await asyncio.Event().wait()  # ends when the client cancels
            await context.abort(grpc.StatusCode[fault.upper()], f"injected fault {fault}")
        self._log(request, plan, request_id, "OK")

        spec = VOICES[plan.voice]
        try:
            pcm = await self.synth.synthesize(
                plan.text, female=spec.female, speed=plan.speed or 1.0, sample_rate=plan.sample_rate
            )
        except (SynthesisFailed, OSError) as exc:
            log.error("emulator TTS: synthesis failed: %s", exc)
            await context.abort(grpc.StatusCode.INTERNAL, "Synthesis failed")

        wait = self._settings.tts_ttfb_ms / 1000 - (time.monotonic() - started)
        if wait > 0:
            await asyncio.sleep(wait)
        for response in self._responses(plan, pcm):
            yield response

    def _responses(
        self,
        plan: _Plan,
        pcm: bytes,
        *,
        cls: type = tts_pb2.UtteranceSynthesisResponse,
        t0_ms: int = 0,
    ) -> list[Any]:
        rate = plan.sample_rate
        step = max(2, rate * 2 * max(1, self._settings.tts_chunk_ms) // 1000 // 2 * 2)
        out = []
        for offset in range(0, len(pcm), step):
            piece = pcm[offset : offset + step]
            data = wav_header(len(pcm), rate) + piece if plan.wav and offset == 0 else piece
            out.append(
                cls(
                    audio_chunk=tts_pb2.AudioChunk(data=data),
                    text_chunk=tts_pb2.TextChunk(text=plan.text) if offset == 0 else None,
                    start_ms=t0_ms + offset * 1000 // (2 * rate),
                    length_ms=len(piece) * 1000 // (2 * rate),
                    chunk_type=cls.AUDIO_TEXT_COMBINED,
                )
            )
        return out

    async def StreamSynthesis(
        self,
        request_iterator: AsyncIterator[tts_pb2.StreamSynthesisRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tts_pb2.StreamSynthesisResponse]:
        """Bidirectional synthesis: options first, then text; a phrase is spoken when a
        sentence ends, on `force_synthesis`, or when the client finishes writing."""
        metadata = dict(context.invocation_metadata() or ())
        if not self._auth.check(metadata.get("authorization")):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unknown api key or IAM token")
        request_id = str(metadata.get("x-client-request-id", ""))
        template: tts_pb2.UtteranceSynthesisRequest | None = None
        buffer, total_chars, t0_ms = "", 0, 0
        it = aiter(request_iterator)
        while True:
            req = await anext(it, None)
            kind = req.WhichOneof("Event") if req is not None else None
            if template is None and req is not None:
                if kind != "options":
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "The first message must carry options"
                    )
                template = _utterance_request(req.options)
                try:
                    _plan(template)  # validates voice, role and format up front
                except _Rejected as exc:
                    await context.abort(exc.code, str(exc))
                continue
            if kind == "options":
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "Options cannot be changed mid-stream"
                )
            if kind == "synthesis_input":
                buffer += req.synthesis_input.text
                total_chars += len(req.synthesis_input.text)
                if total_chars > MAX_UNSAFE_TEXT_CHARS:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Too long text")
            ready, buffer = _ready_text(buffer, force=kind in ("force_synthesis", None))
            if ready.strip() and template is not None:
                request = tts_pb2.UtteranceSynthesisRequest()
                request.CopyFrom(template)
                request.text, request.unsafe_mode = ready.strip(), True
                plan = _plan(request)
                self._log(request, plan, request_id, "OK")
                spec = VOICES[plan.voice]
                pcm = await self.synth.synthesize(
                    plan.text,
                    female=spec.female,
                    speed=plan.speed or 1.0,
                    sample_rate=plan.sample_rate,
                )
                await asyncio.sleep(self._settings.tts_ttfb_ms / 1000)
                for response in self._responses(
                    plan, pcm, cls=tts_pb2.StreamSynthesisResponse, t0_ms=t0_ms
                ):
                    yield response
                t0_ms += len(pcm) * 1000 // (2 * plan.sample_rate)
            if req is None:
                return

    def _log(
        self,
        request: tts_pb2.UtteranceSynthesisRequest,
        plan: _Plan | None,
        request_id: str,
        outcome: str,
    ) -> None:
        fmt = request.output_audio_spec
        self.requests.append(
            TtsRequest(
                text=plan.text if plan else request.text,
                voice=plan.voice if plan else "",
                role=plan.role if plan else None,
                speed=plan.speed if plan else None,
                sample_rate=plan.sample_rate if plan else int(fmt.raw_audio.sample_rate_hertz),
                container="wav"
                if (plan.wav if plan else fmt.HasField("container_audio"))
                else "raw",
                unsafe_mode=request.unsafe_mode,
                client_request_id=request_id,
                outcome=outcome,
            )
        )
