"""Shared fixtures: an in-process Yandex Cloud emulator with fast timings.

Import into a test module with `from tests.emulator_fixtures import emulator  # noqa: F401`.
`start_emulator(**overrides)` gives the same thing with other settings (e.g. a short
IAM token lifetime).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest_asyncio

from voicebot.config import EmulatorSettings
from voicebot.emulator import Emulator

TEST_API_KEY = "AQVN-test-emulator-key"

FAST: dict[str, Any] = {
    "tts_ttfb_ms": 10,
    "tts_chunk_ms": 100,
    "gpt_ttft_ms": 20,
    "gpt_tokens_per_s": 400.0,
}


def fast_settings(**overrides: Any) -> EmulatorSettings:
    """Loopback, free ports, short delays; `overrides` win."""
    return EmulatorSettings(**{"host": "127.0.0.1", **FAST, **overrides})


@asynccontextmanager
async def start_emulator(
    *, api_key: str | None = TEST_API_KEY, **overrides: Any
) -> AsyncIterator[Emulator]:
    emu = Emulator(fast_settings(**overrides), api_key=api_key)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with start_emulator() as emu:
        yield emu
