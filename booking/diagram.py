"""Mermaid rendering of the booking state machine, generated from `TRANSITIONS` so the
picture in docs/ cannot drift from the code (a test compares them)."""

from __future__ import annotations

from pathlib import Path

from booking.machine import TRANSITIONS
from booking.state import ACTIVE_PHASES, Phase

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "booking-state-machine.md"


def _label(trigger: str, guard: str) -> str:
    return f"{trigger} [{guard}]" if guard else trigger


def mermaid() -> str:
    """The state machine's transitions as a Mermaid state diagram."""
    active = set(ACTIVE_PHASES)
    by_edge: dict[tuple[Phase, str], set[Phase]] = {}
    for t in TRANSITIONS:
        by_edge.setdefault((t.target, t.trigger), set()).add(t.source)
    global_edges = {k for k, sources in by_edge.items() if sources >= active}
    lines = ["stateDiagram-v2", f"    [*] --> {Phase.GREETING.name}"]
    emitted_global: set[tuple[Phase, str]] = set()
    any_name = "ANY_ACTIVE"
    for t in TRANSITIONS:
        key = (t.target, t.trigger)
        if key in global_edges and t.source in active:
            if key not in emitted_global:
                emitted_global.add(key)
                lines.append(f"    {any_name} --> {t.target.name}: {_label(t.trigger, t.guard)}")
            continue
        lines.append(f"    {t.source.name} --> {t.target.name}: {_label(t.trigger, t.guard)}")
    if emitted_global:
        members = ", ".join(p.name for p in ACTIVE_PHASES)
        lines.insert(2, f'    state "any of {members}" as {any_name}')
    for p in (Phase.ENDED, Phase.TRANSFER):
        lines.append(f"    {p.name} --> [*]")
    return "\n".join(lines) + "\n"


def document() -> str:
    """docs/booking-state-machine.md's content: the diagram and its legend."""
    return (
        "# Booking dialogue state machine\n\n"
        "Generated from `booking.machine.TRANSITIONS` by `voicebot diagram`"
        " (`python -m booking.diagram --write`); do not edit by hand.\n"
        "Transitions from ANY_ACTIVE are global intents, taken from every active state.\n\n"
        "```mermaid\n" + mermaid() + "```\n"
    )


def main() -> None:
    """Print `document()`."""
    import sys

    if "--write" in sys.argv:
        DOC_PATH.write_text(document(), encoding="utf-8")
    else:
        print(mermaid(), end="")


if __name__ == "__main__":
    main()
