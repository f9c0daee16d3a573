"""The `chat:` config section, typed (unknown keys are errors)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.config import build_section

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class ChatSettings:
    """Settings of the YandexGPT voice chat (config.yaml `chat:`)."""

    system_prompt: str = "prompts/chat_system.txt"  # relative to the repository root
    history_tokens: int = 3000  # system prompt + history + the new caller line
    tokenizer: str = "api"  # api: YandexGPT tokenize endpoint, off the critical path; estimate
    max_tokens: int = 250  # a spoken answer; also bounds the stream's length
    temperature: float = 0.5
    greeting: str = "Здравствуйте! Я голосовой помощник. О чём поговорим?"
    apology: str = "Извините, у меня сейчас не получается ответить. Повторите, пожалуйста."
    silence_prompt: str = "Вы меня слышите?"
    goodbye: str = "Не слышу вас. До свидания!"
    max_silence_prompts: int = 3

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> ChatSettings:
        """Parse `chat:`; raises ValueError on an unknown key or a bad tokenizer mode."""
        settings: ChatSettings = build_section(cls, dict(section or {}), "chat")
        if settings.tokenizer not in ("api", "estimate"):
            raise ValueError("config: chat.tokenizer must be 'api' or 'estimate'")
        if settings.history_tokens <= 0:
            raise ValueError("config: chat.history_tokens must be positive")
        return settings

    def prompt_text(self) -> str:
        """The system prompt's text, read from `system_prompt` (relative to the repository
        root)."""
        path = Path(self.system_prompt)
        if not path.is_absolute():
            path = REPO_ROOT / path
        return path.read_text(encoding="utf-8").strip()
