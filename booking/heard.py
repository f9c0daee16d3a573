"""What the caller heard of the bot: the engine's `on_unheard(said, heard)` report,
applied to the dialogue's model history and its read-back (docs/turn-taking.md)."""

from __future__ import annotations

from typing import Any

from booking.state import Phase
from voicebot.dialogue import ReplyPart
from voicebot.providers.base import ChatMessage


def keep_heard(history: list[ChatMessage], said: str, heard: str) -> None:
    """The model's history holds what the caller heard of the reply `said`: its last
    copy is cut to `heard`, or removed when nothing of it was played."""
    for i in range(len(history) - 1, -1, -1):
        msg = history[i]
        if msg.role == "assistant" and msg.text == said:
            if heard:
                history[i] = ChatMessage("assistant", heard)
            else:
                del history[i]
            return


def readback_missed(state: object, heard: str) -> bool:
    """The machine waits for a yes to a read-back the caller did not hear out."""
    prompt = getattr(state, "last_prompt", None)
    return (
        getattr(state, "phase", None) == Phase.CONFIRMING and bool(prompt) and prompt not in heard
    )


def note_unheard(history: list[ChatMessage], state: object, said: str, heard: str) -> bool:
    """Apply the engine's report to the history; True when the read-back was missed."""
    keep_heard(history, said, heard)
    return readback_missed(state, heard)


def reread(state: object, missed: bool, text: str, log: list[dict[str, Any]]) -> list[ReplyPart]:
    """The read-back to say again instead of taking the caller's `text` as a yes, when
    it was `missed` and the machine still waits for its confirmation; else []."""
    prompt = getattr(state, "last_prompt", None)
    if not missed or getattr(state, "phase", None) != Phase.CONFIRMING or not prompt:
        return []
    log.append({"text": text, "readback_unheard": True})
    return [prompt]
