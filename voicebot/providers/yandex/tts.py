"""SpeechKit TTS v3 client: `UtteranceSynthesis` streamed as raw LINEAR16 PCM.

Audio is requested at the caller's sample rate so nothing is transcoded here, and each
chunk is yielded the moment it arrives, so playback can start on the first chunk.
Text over the 250-character v3 limit is split at sentence (then word) boundaries and
synthesized piece by piece, in order, rather than using `unsafe_mode`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator

import grpc
from yandex.cloud.ai.tts.v3 import tts_pb2, tts_service_pb2_grpc

from voicebot.providers.base import (
    AuthError,
    ProviderError,
    RateLimitError,
    SynthesisOptions,
)
from voicebot.providers.yandex.auth import YandexAuth
from voicebot.providers.yandex.channel import open_channel

log = logging.getLogger(__name__)

MAX_CHARS = 250  # SpeechKit v3 limit per UtteranceSynthesis request
_CALL_TIMEOUT_S = 30.0
_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+")
# A transient failure before the first byte is retried once at once: the caller would
# otherwise lose the whole sentence (seen in `voicebot bench --soak --faults`).
_RETRY_BEFORE_AUDIO = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
}
_RETRIABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence ends, else between words.

    Whole sentences are packed greedily so a long reply costs as few requests as
    possible; a single word longer than `limit` is cut hard (it cannot be spoken
    whole anyway).
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return [text] if text else []
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= limit:
            units.append(sentence)
            continue
        for word in sentence.split(" "):
            units.extend(word[i : i + limit] for i in range(0, len(word), limit))
    pieces: list[str] = []
    current = ""
    for unit in units:
        if not current:
            current = unit
        elif len(current) + 1 + len(unit) <= limit:
            current = f"{current} {unit}"
        else:
            pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return pieces


def grpc_error(exc: grpc.aio.AioRpcError, what: str) -> ProviderError:
    """A gRPC failure as the provider-neutral error type."""
    code = exc.code()
    message = f"{what}: {code.name} {exc.details() or ''}".strip()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AuthError(message, code=code.name, provider="yandex")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimitError(message, code=code.name, retriable=True, provider="yandex")
    return ProviderError(message, code=code.name, retriable=code in _RETRIABLE, provider="yandex")


class YandexTTS:
    """`SpeechSynthesizer` on SpeechKit v3. One channel per instance, shared by calls."""

    name = "yandex"

    def __init__(
        self,
        endpoint: str,
        auth: YandexAuth,
        *,
        tls: bool = True,
    ) -> None:
        self._endpoint = endpoint
        self._auth = auth
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stub: tts_service_pb2_grpc.SynthesizerStub | None = None

    def __repr__(self) -> str:
        return f"YandexTTS(endpoint={self._endpoint!r}, tls={self._tls})"

    def _get_stub(self) -> tts_service_pb2_grpc.SynthesizerStub:
        if self._stub is None:
            self._channel = open_channel(self._endpoint, self._tls)
            self._stub = tts_service_pb2_grpc.SynthesizerStub(self._channel)
        return self._stub

    def request_for(
        self, text: str, options: SynthesisOptions
    ) -> tts_pb2.UtteranceSynthesisRequest:
        """The request for one piece: raw PCM at the caller's rate, one hint per Hints.
        Voice, role and speed come from `options` alone (the runtime fills them from
        `yandex.tts`)."""
        voice, role, speed = options.voice, options.role, options.speed
        hints = [tts_pb2.Hints(voice=voice)]
        if role:
            hints.append(tts_pb2.Hints(role=role))
        if speed is not None:
            hints.append(tts_pb2.Hints(speed=float(speed)))
        return tts_pb2.UtteranceSynthesisRequest(
            text=text,
            hints=hints,
            output_audio_spec=tts_pb2.AudioFormatOptions(
                raw_audio=tts_pb2.RawAudio(
                    audio_encoding=tts_pb2.RawAudio.LINEAR16_PCM,
                    sample_rate_hertz=options.sample_rate,
                )
            ),
            loudness_normalization_type=tts_pb2.UtteranceSynthesisRequest.LUFS,
        )

    async def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        """LINEAR16 mono PCM at `options.sample_rate`, chunk by chunk as it arrives."""
        for piece in split_text(text):
            async for chunk in self._synthesize_piece(piece, options):
                yield chunk

    async def _synthesize_piece(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        request = self.request_for(text, options)
        stub = self._get_stub()
        for attempt in range(2):
            metadata = [*await self._auth.headers(), ("x-client-request-id", str(uuid.uuid4()))]
            call = stub.UtteranceSynthesis(request, metadata=metadata, timeout=_CALL_TIMEOUT_S)
            yielded = False
            try:
                async for response in call:
                    data = response.audio_chunk.data
                    if data:
                        yielded = True
                        yield data
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and attempt == 0 and not yielded:
                    log.info("TTS: credentials refused, refreshing them and retrying once")
                    await self._auth.invalidate()
                    continue
                if exc.code() in _RETRY_BEFORE_AUDIO and attempt == 0 and not yielded:
                    log.warning("TTS: %s before any audio; retrying once", exc.code().name)
                    continue
                raise grpc_error(exc, "TTS synthesis failed") from None
            finally:
                call.cancel()

    async def aclose(self) -> None:
        """Close the gRPC channel, if one was opened."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()
