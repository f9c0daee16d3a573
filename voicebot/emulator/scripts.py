"""Transcript scripts: where the STT emulator gets the text of each detected utterance.

The emulator does not recognize speech; a test or demo says up front what the caller
"says". A script is a list of utterance texts consumed in order. Positions can be kept
per script id so a call that reconnects or rotates its recognition stream continues
where it left off instead of starting the script again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

# Enough for a long benchmark; the oldest ids are forgotten first.
MAX_TRACKED_IDS = 10_000


def load_script_file(path: str | Path) -> list[str]:
    """One utterance per non-empty line; surrounding whitespace is dropped."""
    text = Path(path).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


MD_UTTERANCES = "x-emulator-utterances-bin"
MD_SCRIPT_ID = "x-emulator-script-id"


def script_metadata(
    enabled: bool, script: Sequence[str] | None, script_id: str | None
) -> tuple[tuple[str, str], ...]:
    """The STT request metadata that hands a caller's transcript script to the emulator.

    The one place the emulator hooks are checked: `enabled` is the host's
    `emulator_hooks` (offline, or `emulator.client_scripts` for test/bench servers).
    Off, or with no script, nothing is sent, so production never passes a caller's
    script on. `script_id` keeps the script position across stream rotations.
    """
    if not enabled or script is None:
        return ()
    md = [(MD_UTTERANCES, json.dumps(list(script), ensure_ascii=False))]
    if script_id:
        md.append((MD_SCRIPT_ID, script_id))
    return tuple(md)


def parse_utterances_bin(value: bytes | str) -> list[str]:
    """Decode `x-emulator-utterances-bin` metadata: a UTF-8 JSON array of strings."""
    raw = value.decode("utf-8") if isinstance(value, bytes) else value
    data = json.loads(raw)
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise ValueError("x-emulator-utterances-bin must be a JSON array of strings")
    return data


class ScriptCursor:
    """A position in one script. Text is consumed only when its final is emitted,
    so an utterance cut off by a disconnect gets the same text when replayed."""

    __slots__ = ("_key", "_local", "_registry", "texts")

    def __init__(
        self,
        texts: Sequence[str],
        registry: ScriptRegistry | None = None,
        key: str | None = None,
    ) -> None:
        self.texts = list(texts)
        self._registry = registry
        self._key = key
        self._local = 0

    @property
    def position(self) -> int:
        """How many texts of the script were consumed."""
        if self._registry is not None and self._key is not None:
            return self._registry.position(self._key)
        return self._local

    def peek(self) -> str | None:
        """The text the current utterance will get, or None when the script is exhausted."""
        pos = self.position
        return self.texts[pos] if pos < len(self.texts) else None

    def consume(self) -> None:
        """The current text is used: move to the next one (no-op past the end)."""
        if self.position >= len(self.texts):
            return
        if self._registry is not None and self._key is not None:
            self._registry.advance(self._key)
        else:
            self._local += 1


class ScriptRegistry:
    """Positions per `x-emulator-script-id`, shared by all streams of one emulator."""

    def __init__(self, max_ids: int = MAX_TRACKED_IDS) -> None:
        self._positions: OrderedDict[str, int] = OrderedDict()
        self._max_ids = max_ids

    def position(self, script_id: str) -> int:
        """How many texts `script_id` has consumed."""
        return self._positions.get(script_id, 0)

    def advance(self, script_id: str) -> None:
        """`script_id` consumed one more text (the oldest ids are forgotten beyond the
        bound)."""
        self._positions[script_id] = self._positions.get(script_id, 0) + 1
        self._positions.move_to_end(script_id)
        while len(self._positions) > self._max_ids:
            self._positions.popitem(last=False)

    def forget(self, script_id: str) -> None:
        """Forget `script_id`'s position."""
        self._positions.pop(script_id, None)

    def reset(self) -> None:
        """Forget every position."""
        self._positions.clear()

    def cursor(self, texts: Sequence[str], script_id: str | None) -> ScriptCursor:
        """A cursor over `texts`; with an id its position survives the stream."""
        return ScriptCursor(texts, self if script_id else None, script_id or None)

    def __len__(self) -> int:
        return len(self._positions)
