"""Every tests/dialogues/*.yaml at text level: the expected outcome and bookings."""

from __future__ import annotations

from pathlib import Path

import pytest

from booking.textsim import (
    DIALOGUES_DIR,
    check_expectations,
    load_dialogue,
    run_dialogue,
)

FILES = sorted(DIALOGUES_DIR.glob("*.yaml"))


def test_there_are_enough_dialogues() -> None:
    assert len(FILES) >= 30
    names = [load_dialogue(f)["name"] for f in FILES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_dialogue(path: Path, tmp_path: Path) -> None:
    spec = load_dialogue(path)
    run = await run_dialogue(spec, f"sqlite:///{tmp_path}/store.sqlite3")
    problems = check_expectations(spec, run)
    transcript = "\n".join(run.bot_lines)
    assert not problems, f"{problems}\n--- bot said:\n{transcript}"
