"""One spoken LLM answer: stream the model's text, and never leave the caller in silence.

Used by the chat dialogue and by the booking bot's free questions. The client
(`YandexGPT.stream`) already retries 429/5xx before the first token, within the call's
deadline (`gpt.timeout_s`), and cuts a hung stream at that deadline. What is left to
decide here is what the caller hears when that fails: a short apology if nothing was
said yet; if the answer broke off mid-way, what was already said stands.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from voicebot.providers.base import ChatMessage, GenerationOptions, LanguageModel, ProviderError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AnswerOutcome:
    """What one answer did: the model's text, and the error code if it failed."""

    text: str = ""
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True when the answer failed (its error code is set)."""
        return self.error is not None


async def stream_answer(
    llm: LanguageModel | None,
    messages: Sequence[ChatMessage],
    options: GenerationOptions,
    *,
    fallback: str,
    outcome: AnswerOutcome,
) -> AsyncIterator[str]:
    """Text deltas of the model's answer; `fallback` instead when the model fails (or
    answers nothing) before saying a word. `outcome` is filled as the stream goes."""
    if llm is None:
        outcome.error = "NO_MODEL"
        yield fallback
        return
    try:
        async for delta in llm.stream(messages, options):
            if not outcome.text and not delta.strip():
                continue
            outcome.text += delta
            yield delta
    except ProviderError as exc:
        outcome.error = exc.code
        log.warning("LLM answer failed after %d chars: %r", len(outcome.text), exc)
        if not outcome.text:
            yield fallback
        return
    except Exception:  # a broken client must cost an apology, not a silent turn
        outcome.error = "INTERNAL"
        log.exception("LLM answer crashed")
        if not outcome.text:
            yield fallback
        return
    if not outcome.text.strip():
        outcome.error = "EMPTY"
        yield fallback
