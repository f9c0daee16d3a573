"""The booking bot's hooks for the engine's speculative replies and «waiting for the
rest» (`voicebot.dialogue.Speculative`, `ExpectsMore`).

`speculate(text)` runs the state machine on a copy of the call's state, with the
deterministic parsers only and a backend that can read but not write: nothing the
sandbox does is committed. A turn that would need YandexGPT (the parsers understood
nothing, or a free question), or that would book or cancel, is not speculated.

The decision key is what the turn decided — the phase transitions it made, the slots
after it, what it now expects and the actions it takes — not the words it chose, so a
final that is normalized differently from the partial («15:00» vs «15 00») still
matches when it means the same.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Hashable, Sequence
from typing import Any

from booking.extract import Expecting, Extraction
from booking.machine import BookingMachine
from voicebot.dialogue import DialogueAction, ReplyPart

_DIGIT = re.compile(r"\d")
# Words after which a Russian speaker has visibly not finished: «меня зовут…», «на…».
_UNFINISHED_TAIL = frozenset(
    {
        "зовут",
        "на",
        "в",
        "во",
        "к",
        "ко",
        "с",
        "со",
        "до",
        "после",
        "и",
        "или",
        "а",
        "но",
        "телефон",
        "номер",
        "мой",
        "моя",
        "у",
        "по",
        "от",
        "за",
        "для",
        "примерно",
        "где-то",
        "около",
    }
)
PHONE_DIGITS = 11  # +7 / 8 and ten digits
LOCAL_DIGITS = 10  # a number said without the country prefix


class NotSpeculable(Exception):
    """The sandbox reached something it must not do (a write, a model call)."""


class ReadOnlyBackend:
    """A backend that answers reads and refuses writes (raised at the call, before any
    future exists, so nothing is ever sent)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a speculative reply must not book."""
        raise NotSpeculable("create")

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a speculative reply must not cancel."""
        raise NotSpeculable("cancel")


def sandbox(machine: BookingMachine, understand: Any) -> BookingMachine:
    """A copy of `machine` on a deep copy of its state; `understand` replaces the
    dialogue's own (no model, no logs)."""
    box = copy.copy(machine)
    box.state = copy.deepcopy(machine.state)
    box.backend = ReadOnlyBackend(machine.backend)  # type: ignore[assignment]
    box.availability = box.backend
    box.understand = understand
    box.on_booked = None
    box.notify = None
    return box


def decision_key(
    machine: BookingMachine, history_before: int, parts: Sequence[ReplyPart]
) -> Hashable:
    """What a turn decided: transitions, slots after it, what it expects, its actions."""
    st = machine.state
    return (
        tuple(st.history[history_before:]),
        st.phase.value,
        json.dumps(st.slots.to_json(), sort_keys=True, ensure_ascii=False),
        machine.expecting,
        tuple(p.kind for p in parts if isinstance(p, DialogueAction)),
    )


def needs_model(ex: Extraction, use_llm: str, has_model: bool) -> bool:
    """Whether the real turn would ask YandexGPT (the same rule as `_understand`)."""
    if not has_model:
        return False
    return use_llm == "always" or not ex.resolved or bool(getattr(ex, "unplaced", None))


def expects_more(text: str, expecting: Expecting, phone_buffer: str) -> bool:
    """True when `text` is visibly unfinished: part of a phone number the bot asked for
    (fewer digits than a full number), or a last word that promises more."""
    words = text.lower().replace("…", " ").replace("...", " ").split()
    if not words:
        return False
    if text.rstrip().endswith(("…", "...")):
        return True
    digits = len(_DIGIT.findall(text)) + len(_DIGIT.findall(phone_buffer))
    if expecting == "phone" and digits:
        trimmed = re.sub(r"[^\d+]", "", phone_buffer + text)
        full = PHONE_DIGITS if trimmed.startswith(("+7", "7", "8")) else LOCAL_DIGITS
        if digits < full:
            return True
    return words[-1].strip(",.;:-—") in _UNFINISHED_TAIL
