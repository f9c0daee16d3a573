"""Provider adapters behind `providers/base.py`: Yandex SpeechKit/YandexGPT, the other STT
vendors, selection and failover."""
