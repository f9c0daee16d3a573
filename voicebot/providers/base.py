"""Provider-neutral interfaces for speech recognition, synthesis and text generation.

Every vendor adapter (Yandex first, others later) implements these small protocols, so
the call session never imports a vendor module and swapping one is a config change.
Events are frozen dataclasses: cheap to create, safe to share, easy to assert on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from voicebot.ops import metrics

# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A provider call failed. `retriable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNKNOWN",
        retriable: bool = False,
        provider: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable
        self.provider = provider
        # Counted where it is made: each one stands for one error answer (or timeout)
        # of a provider, retried or not; local life-cycle codes are skipped there.
        metrics.provider_error(provider, code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.args[0]!r}, retriable={self.retriable})"


class AuthError(ProviderError):
    """Credentials were refused (UNAUTHENTICATED / 401 / 403)."""


class RateLimitError(ProviderError):
    """Quota exhausted (RESOURCE_EXHAUSTED / 429). Retriable with backoff."""


class StreamLimitError(ProviderError):
    """A per-stream cap was hit (e.g. SpeechKit's 5-minute OUT_OF_RANGE)."""


class ReopenNow(ProviderError):
    """A stream refused in a way a new stream fixes at once (retriable, not a loss).

    SpeechKit: UNAUTHENTICATED before any response means an expired IAM token (the
    stream already invalidated it), and grpc-aio can report a server's refusal as a
    local INTERNAL (grpc/grpc#36066). `cause` is the error to report when the new
    stream is refused too.
    """

    def __init__(self, cause: ProviderError) -> None:
        super().__init__(
            f"{cause} (a new stream may succeed)",
            code=cause.code,
            retriable=True,
            provider=cause.provider,
        )
        self.cause = cause


# --------------------------------------------------------------------------- recognition


@dataclass(frozen=True, slots=True)
class AudioCursors:
    """Where the recognizer is in the audio it has received (SpeechKit v3 semantics, ms)."""

    received_data_ms: int = 0
    reset_time_ms: int = 0
    partial_time_ms: int = 0
    final_time_ms: int = 0
    final_index: int = 0
    eou_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class Word:
    """One recognized word with its start and end on the stream's clock (ms) and, where
    given, confidence."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Partial:
    """Current guess for the utterance in progress; replaces the previous partial."""

    text: str
    start_ms: int = 0
    end_ms: int = 0
    cursors: AudioCursors = AudioCursors()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Final:
    """Text fixed up to `end_ms`. Several finals may precede one end of utterance."""

    text: str
    final_index: int
    start_ms: int = 0
    end_ms: int = 0
    cursors: AudioCursors = AudioCursors()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class FinalRefinement:
    """The normalized text ("в 15:30", digits) for final `final_index`."""

    text: str
    final_index: int
    cursors: AudioCursors = AudioCursors()


@dataclass(frozen=True, slots=True)
class EndOfUtterance:
    """The recognizer decided the caller finished a phrase at `time_ms` of stream audio."""

    time_ms: int
    cursors: AudioCursors = AudioCursors()


@dataclass(frozen=True, slots=True)
class StatusCode:
    """Keep-alive / status message (WORKING, WARNING, CLOSED)."""

    code: str
    message: str = ""
    cursors: AudioCursors = AudioCursors()


RecognitionEvent = Partial | Final | FinalRefinement | EndOfUtterance | StatusCode


@dataclass(frozen=True, slots=True)
class RecognitionOptions:
    """How a stream should recognize: rate (Hz), language, end-of-utterance pause hint (ms),
    normalization, model, request metadata."""

    sample_rate: int = 16000
    language: str = "ru-RU"
    eou_pause_ms: int = 700
    normalize: bool = True
    model: str = "general"
    # Extra request metadata, e.g. the emulator's transcript script in tests.
    metadata: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class RecognitionStream(Protocol):
    """One live recognition session. Iterate it for events; iteration ends when it closes.

    Failures surface as `ProviderError` raised from the iterator.
    """

    async def send_audio(self, pcm: bytes) -> None:
        """Send LINEAR16 mono audio at the stream's rate; raises `ProviderError` if the
        stream failed."""
        ...

    async def send_silence(self, duration_ms: int) -> None:
        """Send `duration_ms` of silence (keeps the stream alive, advances its clock)."""
        ...

    async def finish(self) -> None:
        """Half-close: no more audio; remaining results still arrive."""
        ...

    async def aclose(self) -> None:
        """Cancel immediately and release resources."""
        ...

    def __aiter__(self) -> AsyncIterator[RecognitionEvent]: ...


class SpeechRecognizer(Protocol):
    """Opens recognition streams; `name` is the provider's ("yandex", "deepgram"...)."""

    name: str

    async def open_stream(self, options: RecognitionOptions) -> RecognitionStream:
        """One new stream, or a `ProviderError` (no retries: the engine decides)."""
        ...


@runtime_checkable
class SupportsFailover(Protocol):
    """A recognizer over several providers (`providers.failover.FailoverRecognizer`)."""

    def fail_over(self, reason: str) -> bool:
        """Move new streams to the next provider; False when none is left."""
        ...


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True, slots=True)
class SynthesisOptions:
    """How to synthesize: rate (Hz), voice, role and speed (None: the voice's own)."""

    sample_rate: int = 16000
    voice: str = "alena"
    role: str | None = None
    speed: float | None = None


class SpeechSynthesizer(Protocol):
    """Text to speech, streamed; `name` is the provider's."""

    name: str

    def synthesize(self, text: str, options: SynthesisOptions) -> AsyncIterator[bytes]:
        """Stream LINEAR16 mono PCM at `options.sample_rate` as it is produced."""
        ...


# --------------------------------------------------------------------------- text generation


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat history: system, user or assistant text."""

    role: Literal["system", "user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole completion: text, status and token counts."""

    text: str
    status: str = "ALTERNATIVE_STATUS_FINAL"
    input_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Sampling, length, JSON schema, timeout (s) and vendor extras for one request."""

    temperature: float = 0.3
    max_tokens: int = 500
    json_schema: dict | None = None
    timeout_s: float = 10.0
    extra: dict = field(default_factory=dict)


class LanguageModel(Protocol):
    """Text generation (YandexGPT): whole completions or streamed deltas."""

    name: str

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> Completion:
        """One whole completion; raises `ProviderError` (retriable or not) on failure."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = GenerationOptions()
    ) -> AsyncIterator[str]:
        """Yield text deltas (not cumulative text) as they arrive."""
        ...
