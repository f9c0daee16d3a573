"""`Runtime.create` leaves nothing running when a later step fails."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator_fixtures import fast_settings
from voicebot.config import Config
from voicebot.emulator.main import Emulator
from voicebot.runtime import Runtime


@pytest.mark.parametrize("factory", ["no_such_module:build", "voicebot.dialogue:no_such_builder"])
async def test_a_failing_dialogue_factory_closes_the_emulator(
    monkeypatch: pytest.MonkeyPatch, factory: str
) -> None:
    started: list[Emulator] = []
    stopped: list[Emulator] = []
    real_start, real_stop = Emulator.start, Emulator.stop

    async def start(self: Emulator) -> None:
        started.append(self)
        await real_start(self)

    async def stop(self: Emulator) -> None:
        stopped.append(self)
        await real_stop(self)

    monkeypatch.setattr(Emulator, "start", start)
    monkeypatch.setattr(Emulator, "stop", stop)
    cfg = Config()
    cfg.emulator = fast_settings()
    cfg.dialogue.factory = factory
    with pytest.raises((ImportError, AttributeError, ValueError)):
        await Runtime.create(cfg, force_emulator=True)
    assert len(started) == 1 and stopped == started
    assert not started[0]._ports  # its servers are down, not left to a closed loop


async def test_closers_run_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    from voicebot.runtime import _close_all

    closed: list[str] = []

    class Broken:
        async def aclose(self) -> None:
            raise RuntimeError("boom")

    class Fine:
        async def stop(self) -> Any:
            closed.append("fine")

    await _close_all([Broken(), Fine()])
    assert closed == ["fine"] and "Broken" in caplog.text
