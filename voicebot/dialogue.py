"""The dialogue hook: what the call engine asks when the caller has said something.

The engine knows nothing about salons. A dialogue turns caller text into a stream of
reply parts: text fragments (spoken as they arrive, sentence by sentence) and
`DialogueAction`s (a booking was made, transfer to a human, hang up). Domain packages
such as `booking` provide a factory, selected by dotted path in config.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from voicebot.clock import Clock
from voicebot.providers.base import LanguageModel

if TYPE_CHECKING:
    from aiohttp import web


@dataclass(frozen=True, slots=True)
class DialogueAction:
    """A side effect the engine reports or acts on.

    Known kinds: "booking" (data: the booking), "booking_cancelled", "transfer"
    (the caller asked for a human), "hangup" (end the call after the reply is played).
    Unknown kinds are passed through to clients as events.
    """

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


class Notice(str):
    """A reply part the caller cannot cut: a legal notice (152-FZ «the call is recorded»).

    A plain `str` everywhere else (history, simulator, text mode). The engine plays it as
    a sentence of its own and in full: caller input that arrives before it has played —
    typed text, an utterance, a barge-in partial — neither cancels nor clears it, and is
    answered once it has played (docs/privacy.md).
    """

    __slots__ = ()


ReplyPart = str | DialogueAction


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line of the call transcript: who spoke, what, at which call time (ms)."""

    role: Literal["caller", "bot"]
    text: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a dialogue knows about its call: ids, clock, optional metered LLM, caller and
    DID, channel."""

    session_id: str
    clock: Clock
    llm: LanguageModel | None = None
    caller_id: str | None = None
    called_id: str | None = None
    channel: str = "browser"
    metadata: Mapping[str, str] = field(default_factory=dict)


class Dialogue(Protocol):
    """One call's conversation: what to say first, after each utterance, after silences."""

    def greet(self) -> AsyncIterator[ReplyPart]:
        """The bot's opening line(s)."""
        ...

    def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        """React to one complete caller utterance."""
        ...

    def on_silence(self, count: int) -> AsyncIterator[ReplyPart]:
        """The caller has said nothing for a while (`count`-th time in a row)."""
        ...

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        """The call ended. Persist what matters; return a summary for the `done` event."""
        ...

    def on_unheard(self, said: str, heard: str) -> None:
        """Only `heard` (a prefix of `said`, "" if nothing played) of a reply reached the
        caller: barge-in, a newer input, or the call ended. Fix the model's history and
        do not treat unheard questions or read-backs as asked. Optional: the engine
        calls it only where a dialogue defines it."""
        ...


class HearsPlayback(Protocol):
    """Optional Dialogue hook: the engine reports the bot text the caller really heard.

    Called once per reply with the text that was played: the whole reply once its audio
    has played, or the part heard when it was cut (barge-in, a newer input; the engine
    cuts at the played position, docs/turn-taking.md). A reply never reported was not
    heard: an LLM history or a read-back must not count on it. `Dialogue.on_unheard`
    is the complement for dialogues that record replies as they generate them.
    """

    def on_played(self, text: str) -> None:
        """The engine played `text` of the bot's reply to the caller."""
        ...


@dataclass(frozen=True, slots=True)
class Speculation:
    """A reply computed in a sandbox from a partial transcript: nothing was committed.

    `key` is the dialogue's decision (for the booking bot: the slots and the phase
    transition it would make), compared with `Speculative.last_decision` once the real
    reply to the final has run; `parts` is the reply the sandbox produced.
    """

    key: Hashable
    parts: tuple[ReplyPart, ...]


class Speculative(Protocol):
    """Optional Dialogue hook: replies that can be prepared before the caller finishes.

    `speculate(text)` runs the dialogue's deterministic layer on `text` without
    committing anything (no state change, no store write, no model call) and returns
    None when it cannot (the turn needs a language model, would write, or acts).
    `last_decision` is the decision key of the last committed `reply()`, set before its
    first part is yielded. LLM turns are never speculated.
    """

    last_decision: Hashable | None

    async def speculate(self, text: str) -> Speculation | None:
        """A reply prepared from a stable partial, or None when nothing can be prepared."""
        ...


class ExpectsMore(Protocol):
    """Optional Dialogue hook: `expects_more(text)` is True when `text` is visibly
    unfinished for the dialogue (half a phone number it is waiting for, «меня зовут…»),
    so the engine waits `engine.continuation_wait_ms` for the rest before answering."""

    def expects_more(self, text: str) -> bool:
        """True when `text` sounds unfinished (the rest is worth waiting for)."""
        ...


class DialogueProvider(Protocol):
    """Process-wide owner of a dialogue domain: opens its stores once, makes one
    `Dialogue` per call. Built from config by `load_provider`."""

    async def start(self) -> None:
        """Open what the domain needs for the whole process (stores, clients)."""
        ...

    def new_dialogue(self, ctx: CallContext) -> Dialogue:
        """The dialogue of one call."""
        ...

    async def prepare(self, setup: Mapping[str, Any]) -> None:
        """Apply domain fixture data from a simulate dialogue file's `setup:` (tests)."""
        ...

    def public_info(self) -> Mapping[str, str]:
        """What a browser page may show before a call (`/api/info`): name, address,
        timezone of the business. Nothing secret, nothing per caller."""
        ...

    def redacted(self) -> Mapping[str, Any]:
        """The provider's config sections as they may be logged (secrets masked): the
        engine does not know what is secret in a domain section."""
        ...

    def extra_routes(self, app: web.Application) -> None:
        """Mount the domain's own pages on the server's app (none: do nothing)."""
        ...

    async def aclose(self) -> None:
        """Close what `start` opened."""
        ...

    # Optional hooks, looked up with getattr (a provider may lack them):
    #   extra_routes(app: aiohttp.web.Application) -> None: `voicebot serve` lets the
    #     domain add its own routes (pages, feeds) and app start-up/clean-up tasks.
    #   Dialogue.on_event(event: Mapping) -> None: called with each event of its call
    #     (e.g. "turn" with latency_ms), to keep in the domain's call records.


class EchoDialogue:
    """Repeats the caller. The engine's own default and a test fixture."""

    def __init__(self, ctx: CallContext | None = None) -> None:
        self.turns = 0

    async def greet(self) -> AsyncIterator[ReplyPart]:
        """The greeting."""
        yield "Здравствуйте! Я вас слушаю."

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        """The caller's words back."""
        self.turns += 1
        yield f"Вы сказали: {text}."

    async def on_silence(self, count: int) -> AsyncIterator[ReplyPart]:
        """«Вы меня слышите?», then a goodbye and a hang-up at the third silence."""
        if count >= 3:
            yield "До свидания."
            yield DialogueAction("hangup", {"reason": "silence"})
        else:
            yield "Вы меня слышите?"

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        """The call's summary: turns and the end reason."""
        return {"turns": self.turns, "reason": reason}

    def on_unheard(self, said: str, heard: str) -> None:
        """Nothing to fix: the echo dialogue keeps no history."""


class EchoProvider:
    """Provider for `EchoDialogue`: `dialogue.factory: voicebot.dialogue:build_echo`."""

    async def start(self) -> None:
        """Nothing to open."""
        return None

    def new_dialogue(self, ctx: CallContext) -> Dialogue:
        """An echo dialogue for the call."""
        return EchoDialogue(ctx)

    async def prepare(self, setup: Mapping[str, Any]) -> None:
        """No fixture data to apply."""
        return None

    def public_info(self) -> Mapping[str, str]:
        """Nothing to show before a call."""
        return {}

    def redacted(self) -> Mapping[str, Any]:
        """No config section of its own."""
        return {}

    def extra_routes(self, app: web.Application) -> None:
        """No pages of its own."""
        return None

    async def aclose(self) -> None:
        """Nothing to close."""
        return None


def build_echo(domain: Mapping[str, Any], options: Mapping[str, Any]) -> DialogueProvider:
    """The echo domain (`dialogue.factory: echo`): the engine's own test dialogue."""
    return EchoProvider()


# `dialogue.factory` short names, next to the full "module:builder" form.
SHORT_NAMES: Mapping[str, str] = {
    "booking": "booking.bot:build_provider",
    "chat": "voicebot.chat:build_provider",
    "echo": "voicebot.dialogue:build_echo",
}


def factory_path(name: str) -> str:
    """The `module:builder` path of a short name (booking, chat, echo) or a full path."""
    return SHORT_NAMES.get(name.strip(), name.strip())


def mode_name(factory: str) -> str:
    """The short name of a factory when it has one (the browser's mode label)."""
    path = factory_path(factory)
    for short, full in SHORT_NAMES.items():
        if full == path:
            return short
    return path


def load_provider(
    path: str, domain: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> DialogueProvider:
    """Resolve a short name or "package.module:builder" and call `builder(domain, options)`.

    `domain` is the untyped config (e.g. the `booking:` section lives at
    domain["booking"]); `options` carries command-line overrides such as {"store": url}
    and the typed `yandex.gpt` settings as {"gpt": GptSettings}. Raises ValueError for
    a path without ":" and ImportError/AttributeError for one that does not resolve.
    """
    path = factory_path(path)
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"dialogue factory must look like 'module:attr', got {path!r}")
    builder = getattr(importlib.import_module(module_name), attr)
    return builder(domain, dict(options or {}))
