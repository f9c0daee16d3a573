"""The README's commands work as written, so it cannot drift from the code again.

Every `voicebot …` row of the Commands table: each flag it names is one the command
accepts (`--help`). Every runnable example in a ```bash block that calls
`.venv/bin/voicebot`: it runs (short timeouts) and succeeds.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _command_rows() -> list[str]:
    rows = []
    for line in README.splitlines():
        if line.startswith("| `voicebot "):
            cell = line.split("|")[1]
            rows += re.findall(r"`(voicebot [^`]+)`", cell)
    return rows


def _examples() -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        out += [ln.strip() for ln in block.splitlines() if ln.strip().startswith(".venv/bin/")]
    return out


def _help(words: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", *words, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_lists_commands_and_examples() -> None:
    assert len(_command_rows()) >= 8 and _examples()


@pytest.mark.parametrize("row", _command_rows())
def test_every_documented_flag_is_accepted(row: str) -> None:
    words = row.split()[1:]
    command = words[:1]
    text = _help(command)
    # `voicebot bookings list`: a second plain word may be a sub-subcommand.
    choices = re.search(r"\{([a-z,-]+)\}", text)
    if len(words) > 1 and choices and words[1] in choices.group(1).split(","):
        command = words[:2]
        text = _help(command)
    for flag in re.findall(r"--[a-z][a-z-]*", row):
        assert flag in text, f"{row}: {flag} is documented but `{' '.join(command)}` lacks it"


@pytest.mark.parametrize("example", _examples())
def test_readme_examples_run(example: str, tmp_path: Path) -> None:
    argv = shlex.split(example)
    assert argv[0] == ".venv/bin/voicebot", example
    done = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", *argv[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _dependency_table_names() -> set[str]:
    section = README.split("## Dependencies and why", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| package"):
            for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                names.add(re.sub(r"\[.*\]", "", token).strip().lower())
    return names


def test_every_dependency_is_in_the_readme_table() -> None:
    """Each runtime and dev requirement of pyproject.toml has a «why» row in the README."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    names = {re.match(r"[A-Za-z0-9_.-]+", spec).group(0).lower() for spec in required}
    missing = sorted(names - _dependency_table_names())
    assert not missing, f"pyproject.toml dependencies without a README row: {missing}"
