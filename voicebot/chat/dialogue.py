"""The YandexGPT voice chat: `dialogue.factory: chat` (voicebot.chat:build_provider).

A free conversation: each caller utterance goes to YandexGPT with the system prompt
(`prompts/chat_system.txt`) and the history of what was actually said and heard,
trimmed to `chat.history_tokens`. The answer is streamed: the engine's sentence
splitter sends the first sentence (or the head of a long first clause, cut at a
comma) to synthesis while the model is still generating the rest. Errors cost a short
spoken apology, never silence (`voicebot.chat.answer`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from voicebot.chat.answer import AnswerOutcome, stream_answer
from voicebot.chat.history import ChatHistory
from voicebot.chat.settings import ChatSettings
from voicebot.chat.tokens import TokenCache, TokenCounter
from voicebot.config import GptSettings
from voicebot.dialogue import CallContext, Dialogue, DialogueAction, ReplyPart, TranscriptLine
from voicebot.providers.base import GenerationOptions


class ChatProvider:
    """Process-wide part of the chat: settings, the system prompt, the token cache."""

    # Offline, the runtime hands this dialogue the emulator's GPT (a test double with
    # scripted or echo answers); the booking bot runs without a model there.
    offline_llm = True

    def __init__(self, settings: ChatSettings, gpt: GptSettings) -> None:
        self.settings = settings
        self.gpt = gpt
        self.system_prompt = settings.prompt_text()
        self.tokens = TokenCache()

    async def start(self) -> None:
        """Nothing process-wide to open."""
        return None

    def new_dialogue(self, ctx: CallContext) -> Dialogue:
        """A chat dialogue for the call."""
        return ChatDialogue(self, ctx)

    async def prepare(self, setup: Mapping[str, Any]) -> None:
        """No fixture data to apply."""
        return None

    def public_info(self) -> Mapping[str, str]:
        """Nothing to show before a call."""
        return {}

    def redacted(self) -> Mapping[str, Any]:
        """`chat:` as it may be logged (it holds nothing secret)."""
        return {"chat": dataclasses.asdict(self.settings)}

    def extra_routes(self, app: Any) -> None:
        """The chat serves no pages of its own."""
        return None

    async def aclose(self) -> None:
        """Nothing to close."""
        return None


class ChatDialogue:
    """One chat call."""

    def __init__(self, provider: ChatProvider, ctx: CallContext) -> None:
        self.p = provider
        self.ctx = ctx
        s = provider.settings
        tokenizer = ctx.llm if hasattr(ctx.llm, "count_tokens") else None
        self.counter = TokenCounter(
            tokenizer, "api" if s.tokenizer == "api" else "estimate", provider.tokens
        )  # type: ignore[arg-type]
        self.history = ChatHistory(self.counter, s.history_tokens)
        self.options = GenerationOptions(
            temperature=s.temperature, max_tokens=s.max_tokens, timeout_s=provider.gpt.timeout_s
        )
        self.turns = 0
        self.failures = 0
        self.requests: list[int] = []  # messages sent per request (summary)
        self._background: set[asyncio.Task[None]] = set()
        self._learn(provider.system_prompt)

    # ------------------------------------------------------------------ Dialogue

    async def greet(self) -> AsyncIterator[ReplyPart]:
        """The configured greeting."""
        yield self.p.settings.greeting

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        """Stream the model's answer to the caller's words (a spoken apology if it fails)."""
        self.turns += 1
        self._learn(self.history.add("user", text))
        messages = self.history.window(self.p.system_prompt)
        self.requests.append(len(messages))
        outcome = AnswerOutcome()
        async for delta in stream_answer(
            self.ctx.llm, messages, self.options, fallback=self.p.settings.apology, outcome=outcome
        ):
            yield delta
        if outcome.failed:
            self.failures += 1

    async def on_silence(self, count: int) -> AsyncIterator[ReplyPart]:
        """«Вы меня слышите?» until the limit, then a goodbye and a hang-up."""
        if count >= self.p.settings.max_silence_prompts:
            yield self.p.settings.goodbye
            yield DialogueAction("hangup", {"reason": "silence"})
        else:
            yield self.p.settings.silence_prompt

    def on_played(self, text: str) -> None:
        """The engine played `text` of the bot's reply to the caller: it is history now."""
        self._learn(self.history.add("assistant", text))

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        """Cancel background token counting; the call's summary: turns, reason, failures,
        history."""
        for task in list(self._background):
            task.cancel()
        return {
            "turns": self.turns,
            "reason": reason,
            "llm_failures": self.failures,
            "history_lines": len(self.history.lines),
            "tokens_exact": self.counter.exact,
            "tokens_estimated": self.counter.estimated,
        }

    # ------------------------------------------------------------------ helpers

    def _learn(self, text: str) -> None:
        """Count `text` exactly in the background (never on the critical path)."""
        if not text:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.counter.learn(text))
        except RuntimeError:  # no loop yet (constructed outside a call): count later
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def build_provider(domain: Mapping[str, Any], options: Mapping[str, Any]) -> ChatProvider:
    """The engine's entry point (`dialogue.factory: chat`): `domain["chat"]` is the
    config section, `options["gpt"]` the `yandex.gpt` settings (timeout, retries)."""
    gpt = options.get("gpt")
    return ChatProvider(
        ChatSettings.from_section(domain.get("chat")),
        gpt if isinstance(gpt, GptSettings) else GptSettings(),
    )
