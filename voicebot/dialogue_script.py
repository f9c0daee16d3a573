"""Dialogue files of `voicebot simulate`: YAML -> a typed `DialogueScript`.

Dialogue file (YAML):
    now: "2026-11-23T10:00:00+03:00"     # the call's clock starts here (needs an offset)
    setup: {...}                          # optional domain fixture (e.g. existing bookings)
    reply_gap_ms: 200                     # the caller answers this long after the bot's audio ends
    caller:
      - "plain line"                      # spoken reply_gap_ms after the bot's audio ends
      - {say: "...", after_ms: 150}       # this line's own gap; negative: start that long
                                          #   before the bot finishes (talking over its end)
      - {say: "...", then_pause_ms: 900, say_more: "..."}  # a pause mid-thought
      - {say: "...", barge_in_after_ms: 800}   # interrupt the bot 800 ms into its reply
      - {silence_ms: 9000}                # say nothing for a while
    echo: false                           # true: the bot's audio leaks into the microphone
    echo_gain_db: -6                      # its level in the microphone (0 = as loud as played)
    echo_delay_ms: 30                     # the echo path's delay (device buffers, the room)
    sample_rate: 16000                    # 8000, 16000 or 48000 Hz
    expect: {...}                         # optional checks for the dialogue tests
    factory: chat                         # optional: overrides `dialogue.factory`

People answer about 200 ms after the other side stops talking, so that is the default
gap; the seed's caller waited `echo_tail_ms + 250 ms`, which hid every prompt answer.

Every malformed file is a `ValueError` naming the file and the field (fuzzed by
tests/test_fuzz_decoders.py): no `TypeError` or YAML error escapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

SAMPLE_RATES = (8000, 16000, 48000)
MAX_MS = 3_600_000  # an hour: no caller line waits longer


@dataclass(frozen=True, slots=True)
class CallerLine:
    """One caller step: a line to say (maybe barging in), or a silence in ms."""

    say: str | None = None
    barge_in_after_ms: int | None = None
    silence_ms: int = 0
    after_ms: int | None = None  # gap after the bot's audio ends (None: reply_gap_ms)
    then_pause_ms: int = 0
    say_more: str | None = None


@dataclass(slots=True)
class DialogueScript:
    """A whole scripted call: its clock start, caller lines, fixture and checks."""

    now: datetime | None
    lines: list[CallerLine]
    setup: Mapping[str, Any] = field(default_factory=dict)
    echo: bool = False
    sample_rate: int = 16000
    name: str = ""
    expect: Mapping[str, Any] = field(default_factory=dict)
    factory: str | None = None  # overrides `dialogue.factory`
    reply_gap_ms: int = 200
    echo_gain_db: float = -6.0
    echo_delay_ms: int = 30

    @property
    def utterances(self) -> list[str]:
        """What the recognizer hears, in order (a pause mid-thought makes two): the
        emulator's transcript script."""
        out: list[str] = []
        for ln in self.lines:
            out += [t for t in (ln.say, ln.say_more) if t]
        return out


def _ms(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MS:
        raise ValueError(f"{where} must be a whole number of ms from 0 to {MAX_MS}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{where} must be text")
    return str(value)


def _signed_ms(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_MS <= value <= MAX_MS:
        raise ValueError(f"{where} must be a whole number of ms (negative: before)")
    return value


SAY_KEYS = frozenset({"say", "barge_in_after_ms", "after_ms", "then_pause_ms", "say_more"})


def _line(item: Any, where: str) -> CallerLine:
    if isinstance(item, str):
        return CallerLine(say=item)
    if isinstance(item, dict) and "say" in item:
        unknown = set(item) - SAY_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
        if ("then_pause_ms" in item) != ("say_more" in item):
            raise ValueError(f"{where}: then_pause_ms and say_more go together")
        after = item.get("barge_in_after_ms")
        gap = item.get("after_ms")
        more = item.get("say_more")
        return CallerLine(
            say=_text(item["say"], f"{where}.say"),
            barge_in_after_ms=None if after is None else _ms(after, f"{where}.barge_in_after_ms"),
            after_ms=None if gap is None else _signed_ms(gap, f"{where}.after_ms"),
            then_pause_ms=_ms(item.get("then_pause_ms", 0), f"{where}.then_pause_ms"),
            say_more=None if more is None else _text(more, f"{where}.say_more"),
        )
    if isinstance(item, dict) and "silence_ms" in item:
        return CallerLine(silence_ms=_ms(item["silence_ms"], f"{where}.silence_ms"))
    raise ValueError(f"{where} must be a string, {{say: ...}} or {{silence_ms: N}}")


def _now(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{path}: 'now' is not an ISO date-time: {value[:40]!r}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{path}: 'now' must be an ISO date-time with a UTC offset")
    if value.tzinfo is None:
        raise ValueError(f"{path}: 'now' needs a UTC offset, e.g. 2026-11-23T10:00:00+03:00")
    return value


def _mapping(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{path}: '{key}' must be a mapping")
    return value


def parse_script(data: Any, path: str = "dialogue") -> DialogueScript:
    """A dialogue from already-parsed YAML; ValueError when it is malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("caller", []), list):
        raise ValueError(f"{path}: a dialogue needs a 'caller:' list")
    lines = [
        _line(item, f"{path}: caller item {i}") for i, item in enumerate(data.get("caller") or [])
    ]
    rate = data.get("sample_rate", 16000)
    if isinstance(rate, bool) or rate not in SAMPLE_RATES:
        raise ValueError(f"{path}: sample_rate must be one of {SAMPLE_RATES}")
    echo = data.get("echo", False)
    if not isinstance(echo, bool):
        raise ValueError(f"{path}: 'echo' must be true or false")
    factory = data.get("factory")
    if factory is not None and not isinstance(factory, str):
        raise ValueError(f"{path}: 'factory' must be a dialogue factory name")
    gain = data.get("echo_gain_db", -6.0)
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not -60 <= gain <= 20:
        raise ValueError(f"{path}: 'echo_gain_db' must be a number from -60 to 20")
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str | int | float) or isinstance(name, bool):
        raise ValueError(f"{path}: 'name' must be text")
    return DialogueScript(
        now=_now(data.get("now"), path),
        lines=lines,
        setup=_mapping(data, "setup", path),
        echo=echo,
        sample_rate=int(rate),
        name=str(name),
        expect=_mapping(data, "expect", path),
        factory=factory or None,
        reply_gap_ms=_ms(data.get("reply_gap_ms", 200), f"{path}: reply_gap_ms"),
        echo_gain_db=float(gain),
        echo_delay_ms=_ms(data.get("echo_delay_ms", 30), f"{path}: echo_delay_ms"),
    )


def load_script(path: str | Path) -> DialogueScript:
    """Read and parse a dialogue file; ValueError when it cannot be used as one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the dialogue: {exc}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid YAML: {str(exc)[:200]}") from None
    return parse_script(data if data is not None else {}, str(path))
