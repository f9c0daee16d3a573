"""Pick the booking backend named by `booking.backend` (`local` by default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from booking.backends.base import BookingBackend
from booking.backends.local import LocalBackend
from booking.catalog import Catalog
from booking.store.base import BookingStore
from voicebot.clock import Clock

BACKENDS = ("local", "yclients")


def open_backend(
    section: Mapping[str, Any], catalog: Catalog, store: BookingStore, *, clock: Clock | None = None
) -> BookingBackend:
    """The backend for a `booking:` config section (not yet opened: call `open()`).

    Raises ValueError for an unknown `booking.backend` value.
    """
    kind = str(section.get("backend") or "local")
    if section.get("yclients") is not None:
        from booking.yclients.settings import YclientsSettings

        YclientsSettings.from_config(section["yclients"], {})  # unknown keys: start-up error
    if kind == "local":
        return LocalBackend(catalog, store)
    if kind == "yclients":
        from booking.yclients.backend import YclientsBackend

        return YclientsBackend.from_config(section, catalog, store, clock=clock)
    raise ValueError(f"config: booking.backend must be one of {', '.join(BACKENDS)}, not {kind!r}")
