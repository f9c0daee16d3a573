"""The dialogue a new call gets while providers are overloaded: one polite sentence
(`server.busy_message`, «все линии заняты»), then the bot hangs up.

Better than a slow bot: the caller knows at once to call back, and the overloaded
provider is asked for one short synthesis instead of a whole conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from voicebot.dialogue import DialogueAction, ReplyPart, TranscriptLine


class BusyDialogue:
    """Says `message` and hangs up with reason `busy`; hears nothing else."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def greet(self) -> AsyncIterator[ReplyPart]:
        """The busy message and the hang-up."""
        yield self.message
        yield DialogueAction("hangup", {"reason": "busy"})

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        """Nothing: the call is already ending."""
        return
        yield  # an async generator that yields nothing

    async def on_silence(self, count: int) -> AsyncIterator[ReplyPart]:
        """Nothing: the call is already ending."""
        return
        yield

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        """The summary of a refused call."""
        return {"outcome": "busy", "reason": reason}


async def farewell(text: str, reason: str) -> AsyncIterator[ReplyPart]:
    """A last turn's parts: `text`, then the hang-up with `reason` (drain goodbye)."""
    yield text
    yield DialogueAction("hangup", {"reason": reason})
