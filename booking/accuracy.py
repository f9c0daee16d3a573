"""Booking accuracy over dialogue files at text level: `python -m booking.accuracy`.

Runs every `*.yaml` dialogue (tests/dialogues by default, or the folders given) through
the booking bot without audio, with `use_llm: never` unless told otherwise, each against
a fresh SQLite store, and sorts each call into one class:

- ``exact``: booked, and every booking matches the expected one (service, master, start,
  name, phone as the file states);
- ``wrong``: a booking was made that the file does not expect (a wrong slot, name,
  phone or master, or any booking where none was expected): the failure that costs the
  salon a client, which must stay at 0;
- ``none``: a booking was expected and none was made (the caller was asked, not guessed);
- ``correct_none``: no booking expected and none made (hang-ups, cancellations, questions).

Prints a table and the rates (per cent of the dialogues that expect a booking for exact /
none; of all dialogues for wrong); `--json` prints the same as one object. Exit status 1
when any booking is wrong, so CI can hold the line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booking.textsim import DIALOGUES_DIR, booking_matches, load_dialogue, run_dialogue


@dataclass(frozen=True, slots=True)
class Verdict:
    """One dialogue's class and why."""

    name: str
    klass: str  # exact | wrong | none | correct_none
    detail: str = ""


def classify(
    name: str, want: Sequence[Mapping[str, Any]], got: Sequence[Mapping[str, Any]]
) -> Verdict:
    """The class of one call from its expected and made bookings."""
    if not got:
        return Verdict(name, "none" if want else "correct_none")
    if len(got) != len(want):
        return Verdict(name, "wrong", f"{len(got)} bookings made, {len(want)} expected")
    for g, w in zip(got, want, strict=True):
        if not booking_matches(g, w):
            return Verdict(name, "wrong", f"made {dict(g)}, expected {dict(w)}")
    return Verdict(name, "exact")


async def measure(paths: Sequence[Path], use_llm: str = "never") -> list[Verdict]:
    """Run each dialogue file and classify it."""
    out: list[Verdict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(paths):
            spec = load_dialogue(path)
            run = await run_dialogue(spec, f"sqlite:///{tmp}/{i}.sqlite3", use_llm=use_llm)
            want = list((spec.get("expect") or {}).get("bookings") or [])
            out.append(classify(path.stem, want, run.bookings))
    return out


def summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Counts and rates (per cent, one decimal)."""
    counts = {
        k: sum(v.klass == k for v in verdicts) for k in ("exact", "wrong", "none", "correct_none")
    }
    expecting = (
        counts["exact"]
        + counts["none"]
        + sum(v.klass == "wrong" and "0 expected" not in v.detail for v in verdicts)
    )
    total = len(verdicts)

    def pct(n: int, d: int) -> float:
        return round(100.0 * n / d, 1) if d else 0.0

    return {
        "dialogues": total,
        "expecting_a_booking": expecting,
        "counts": counts,
        "booked_exactly_as_asked_pct": pct(counts["exact"], expecting),
        "no_booking_pct": pct(counts["none"], expecting),
        "wrong_booking_pct": pct(counts["wrong"], total),
        "wrong": [{"dialogue": v.name, "detail": v.detail} for v in verdicts if v.klass == "wrong"],
        "no_booking": [v.name for v in verdicts if v.klass == "none"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m booking.accuracy", description=__doc__)
    ap.add_argument(
        "dirs", nargs="*", type=Path, help=f"dialogue folders (default {DIALOGUES_DIR})"
    )
    ap.add_argument("--use-llm", default="never", choices=["never", "auto", "always"])
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args(argv)
    dirs = args.dirs or [DIALOGUES_DIR]
    paths = sorted(p for d in dirs for p in d.glob("*.yaml"))
    verdicts = asyncio.run(measure(paths, args.use_llm))
    result = summary(verdicts)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        for v in verdicts:
            print(f"{v.klass:<13} {v.name}  {v.detail}")
        c = result["counts"]
        print(
            f"\n{result['dialogues']} dialogues, {result['expecting_a_booking']} expect a booking: "
            f"booked exactly as asked {c['exact']} ({result['booked_exactly_as_asked_pct']}%), "
            f"no booking {c['none']} ({result['no_booking_pct']}%), "
            f"wrong booking {c['wrong']} ({result['wrong_booking_pct']}% of all), "
            f"correctly none {c['correct_none']}"
        )
    return 1 if result["counts"]["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
