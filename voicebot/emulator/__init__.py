"""Local Yandex Cloud emulator: a test double speaking the real wire protocols.

`Emulator` is imported lazily so light helpers (`voicebot.emulator.scripts`) can be
used without loading gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebot.emulator.main import Emulator

__all__ = ["Emulator"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from voicebot.emulator.main import Emulator

        return Emulator
    raise AttributeError(name)
