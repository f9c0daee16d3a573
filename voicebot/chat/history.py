"""The chat's conversation history: what the caller said and what the caller heard.

Only text that was really exchanged goes in. Caller lines are added when the engine
hands the dialogue a final utterance; bot lines only when the engine reports them played
(`Dialogue.on_played`), so a reply that was generated but cancelled, or cut off, never
reaches the model as something the caller knows. Two caller lines in a row (the bot's
answer in between was never heard) are joined into one user message.

`window()` trims the oldest messages so the system prompt, the history and the new
message fit a token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from voicebot.chat.tokens import TokenCounter
from voicebot.providers.base import ChatMessage


@dataclass(frozen=True, slots=True)
class Said:
    """One history line."""

    role: Literal["user", "assistant"]
    text: str


class ChatHistory:
    """Alternating user/assistant lines, oldest first."""

    def __init__(self, counter: TokenCounter, budget_tokens: int) -> None:
        self.counter = counter
        self.budget_tokens = budget_tokens
        self.lines: list[Said] = []
        self.trimmed = 0  # lines left out of the last window

    def add(self, role: Literal["user", "assistant"], text: str) -> str:
        """Append a line (joined to the previous one of the same role); returns the
        text of the line as stored, for the token counter to learn."""
        text = text.strip()
        if not text:
            return ""
        if self.lines and self.lines[-1].role == role:
            text = f"{self.lines[-1].text} {text}"
            self.lines[-1] = Said(role, text)
        else:
            self.lines.append(Said(role, text))
        return text

    def window(self, system: str) -> list[ChatMessage]:
        """System prompt + the newest lines that fit the budget, starting with a user
        line. The newest line is always kept, even alone over budget: the model must
        see what it answers."""
        left = self.budget_tokens - self.counter.count(system)
        kept: list[Said] = []
        for line in reversed(self.lines):
            cost = self.counter.count(line.text)
            if kept and cost > left:
                break
            kept.append(line)
            left -= cost
        kept.reverse()
        while len(kept) > 1 and kept[0].role != "user":
            kept.pop(0)
        self.trimmed = len(self.lines) - len(kept)
        return [ChatMessage("system", system), *_messages(kept)]


def _messages(lines: Sequence[Said]) -> list[ChatMessage]:
    return [ChatMessage(line.role, line.text) for line in lines]
