"""The layer rules of docs/architecture.md, checked on the real import graph.

import-linter (the contracts are in pyproject.toml, `[tool.importlinter]`) reads every
import statement of `voicebot` and `booking`, lazy ones inside functions included.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_import_rules_hold() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.fail("import-linter is a dev dependency: pip install -e '.[dev]'")
    done = subprocess.run(
        [lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "BROKEN" not in done.stdout, done.stdout + done.stderr
    assert " 0 broken" in done.stdout, done.stdout


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    """The checker is not vacuous: a transport importing the runtime breaks a contract."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    pkg = tmp_path / "voicebot"
    (pkg / "transports").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "runtime.py").write_text("")
    (pkg / "transports" / "__init__.py").write_text("")
    (pkg / "transports" / "bad.py").write_text("from voicebot import runtime\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = voicebot\n\n"
        "[importlinter:contract:1]\nname = transports see only CallHost\ntype = forbidden\n"
        "source_modules = voicebot.transports\nforbidden_modules = voicebot.runtime\n"
    )
    done = subprocess.run(
        [lint, "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout + done.stderr
