"""Yandex Cloud adapters: SpeechKit v3 STT and TTS over gRPC, YandexGPT over REST, API-key
and IAM auth."""
