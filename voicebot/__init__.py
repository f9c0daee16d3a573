"""voicebot: a real-time voice-bot dialogue engine (Yandex SpeechKit v3 + YandexGPT)."""

__version__ = "0.1.0"
