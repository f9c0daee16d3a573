"""Local Yandex Cloud emulator: a test double speaking the real wire protocols."""

from voicebot.emulator.main import Emulator

__all__ = ["Emulator"]
