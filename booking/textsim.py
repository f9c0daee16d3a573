"""Runs a tests/dialogues/*.yaml file at text level against the booking provider.

The same files go through `voicebot simulate` (audio path); here they run without audio,
fast, to pin down the dialogue logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from booking.bot import build_provider
from voicebot.clock import VirtualClock
from voicebot.config import load_config
from voicebot.dialogue import CallContext, DialogueAction, TranscriptLine

DIALOGUES_DIR = Path(__file__).resolve().parent.parent / "tests" / "dialogues"


@dataclass
class DialogueRun:
    """What one text-only dialogue run produced: bot lines, actions, summary, hang-up,
    stored bookings."""

    bot_lines: list[str] = field(default_factory=list)
    actions: list[DialogueAction] = field(default_factory=list)
    summary: Mapping[str, Any] = field(default_factory=dict)
    hung_up: bool = False
    store_bookings: list[Any] = field(default_factory=list)

    @property
    def bookings(self) -> list[Mapping[str, Any]]:
        """The bookings the dialogue reported."""
        return [a.data for a in self.actions if a.kind == "booking"]


def load_dialogue(path: Path) -> dict[str, Any]:
    """A dialogue YAML file as a dict."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


async def run_dialogue(
    spec: Mapping[str, Any],
    store_url: str,
    *,
    llm: Any = None,
    use_llm: str = "auto",
    caller_id: str | None = None,
    booking_overrides: Mapping[str, Any] | None = None,
    notify: Mapping[str, Any] | None = None,
) -> DialogueRun:
    """Run a dialogue file's caller lines through the booking bot without audio."""
    domain = load_config().domain
    if notify is not None:
        domain = {**domain, "notify": notify}
    section = {**domain.get("booking", {}), "use_llm": use_llm, **(booking_overrides or {})}
    domain = {**domain, "booking": section}
    provider = build_provider(domain, {"store": store_url})
    await provider.start()
    run = DialogueRun()
    try:
        if spec.get("setup"):
            await provider.prepare(spec["setup"])
        clock = VirtualClock(datetime.fromisoformat(str(spec["now"])))
        ctx = CallContext(
            session_id=f"test-{spec.get('name', 'call')}",
            clock=clock,
            llm=llm,
            caller_id=caller_id,
        )
        dialogue = provider.new_dialogue(ctx)
        transcript: list[TranscriptLine] = []

        def at_ms() -> int:
            return int(clock.monotonic() * 1000)

        async def consume(parts: Any) -> None:
            async for part in parts:
                if isinstance(part, DialogueAction):
                    run.actions.append(part)
                    if part.kind == "hangup":
                        run.hung_up = True
                else:
                    run.bot_lines.append(part)
                    transcript.append(TranscriptLine("bot", part, at_ms()))

        await consume(dialogue.greet())
        silences = 0
        for item in spec.get("caller") or []:
            if run.hung_up:
                break
            if isinstance(item, Mapping) and "silence_ms" in item:
                await clock.advance(float(item["silence_ms"]) / 1000)
                silences += 1
                await consume(dialogue.on_silence(silences))
                continue
            text = item["say"] if isinstance(item, Mapping) else str(item)
            silences = 0
            await clock.advance(2.0)
            transcript.append(TranscriptLine("caller", text, at_ms()))
            await consume(dialogue.reply(text))
        run.summary = await dialogue.close(transcript, "hangup" if run.hung_up else "caller_left")
    finally:
        await provider.aclose()
    # Durability: what a fresh connection to the same store sees.
    from booking.store.base import open_store

    fresh = open_store(store_url)
    await fresh.open()
    try:
        run.store_bookings = [
            b for b in await fresh.list_all() if b.call_id == f"test-{spec.get('name', 'call')}"
        ]
    finally:
        await fresh.close()
    return run


def booking_matches(got: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """True when `got` has every key of `want` with the same value (start and end compared
    as instants)."""
    for key, value in want.items():
        g = got.get(key)
        if key in {"start", "end"}:
            if datetime.fromisoformat(str(g)) != datetime.fromisoformat(str(value)):
                return False
        elif str(g) != str(value):
            return False
    return True


def check_expectations(spec: Mapping[str, Any], run: DialogueRun) -> list[str]:
    """Human-readable mismatches (empty when the dialogue went as expected)."""
    expect = spec.get("expect") or {}
    problems: list[str] = []
    if "outcome" in expect and run.summary.get("outcome") != expect["outcome"]:
        problems.append(f"outcome {run.summary.get('outcome')!r} != {expect['outcome']!r}")
    if "bookings" in expect:
        want = list(expect["bookings"] or [])
        got = run.bookings
        if len(got) != len(want):
            problems.append(f"{len(got)} bookings made, expected {len(want)}: {got}")
        else:
            for g, w in zip(got, want, strict=True):
                if not booking_matches(g, w):
                    problems.append(f"booking {g} does not match {w}")
        if len(run.store_bookings) != len(want):
            problems.append(f"store holds {len(run.store_bookings)} bookings for the call")
    said = "\n".join(run.bot_lines)
    for needle in expect.get("bot_says") or []:
        if needle not in said:
            problems.append(f"bot never said {needle!r}")
    for needle in expect.get("bot_never_says") or []:
        if needle in said:
            problems.append(f"bot said {needle!r}")
    return problems
