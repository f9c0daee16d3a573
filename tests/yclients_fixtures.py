"""The YCLIENTS emulator (a test double) started in the test's loop, and a backend on it.

Import the fixtures into a test module: `from tests.yclients_fixtures import
backend_fixture, emulator_fixture, local_store_fixture  # noqa: F401`; they are used
by their names `backend`, `emulator`, `local_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from booking.catalog import Catalog
from booking.store.base import BookingStore, open_store
from booking.yclients.backend import YclientsBackend
from booking.yclients.emulator import YclientsEmulator
from booking.yclients.settings import YclientsSettings
from voicebot.config import load_config

NOW = datetime.fromisoformat("2026-11-23T10:00:00+03:00")


def config_catalog(**salon: Any) -> Catalog:
    section = dict(load_config(env={}).domain["booking"])
    if salon:
        section["salon"] = {**section["salon"], **salon}
    return Catalog.from_config(section)


async def start_emulator(catalog: Catalog, now: datetime = NOW, **kw: Any) -> YclientsEmulator:
    emu = YclientsEmulator.from_catalog(catalog, **kw)
    emu.company.now = lambda: now
    await emu.start()
    return emu


def settings_for(emu: YclientsEmulator, **kw: Any) -> YclientsSettings:
    kw.setdefault("rate_per_s", float(emu.rate_limit))
    return YclientsSettings(
        base_url=emu.url,
        company_id=emu.company_id,
        partner_token=emu.partner_token,
        user_token=emu.user_token,
        **kw,
    )


# The real limit (5/s) is tested on its own; elsewhere a higher one keeps tests fast.
FAST = 100


@pytest.fixture(name="emulator")
async def emulator_fixture() -> AsyncIterator[YclientsEmulator]:
    emu = await start_emulator(config_catalog(), rate_limit=FAST)
    yield emu
    await emu.stop()


@pytest.fixture(name="local_store")
async def local_store_fixture(tmp_path: Path) -> AsyncIterator[BookingStore]:
    store = open_store(f"sqlite:///{tmp_path}/calls.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture(name="backend")
async def backend_fixture(
    emulator: YclientsEmulator, local_store: BookingStore
) -> AsyncIterator[YclientsBackend]:
    b = YclientsBackend(settings_for(emulator), config_catalog(), local_store)
    await b.open()
    yield b
    await b.close()


def write_config(path: Path, emu: YclientsEmulator, **notify: Any) -> Path:
    """config.yaml with `booking.backend: yclients` on `emu` (and `notify:` overrides)."""
    import yaml

    root = Path(__file__).resolve().parent.parent
    raw = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    raw["booking"]["backend"] = "yclients"
    raw["booking"]["yclients"].update(base_url=emu.url, company_id=emu.company_id)
    for channel, values in notify.items():
        raw["notify"][channel].update(values)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path
