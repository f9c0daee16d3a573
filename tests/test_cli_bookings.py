"""`voicebot bookings list --date`: a bad date is a clean usage error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.cli import main


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "02.12.2026"])
def test_bad_date_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bookings", "list", "--date", bad])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--date" in err and "YYYY-MM-DD" in err and "Traceback" not in err


def test_good_date_lists_that_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'bookings.sqlite3'}"
    assert main(["bookings", "list", "--date", "2026-12-02", "--store", store]) == 0
    assert capsys.readouterr().out.strip() == "no bookings"
