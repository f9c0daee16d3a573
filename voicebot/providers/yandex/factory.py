"""Pick the credential type from settings: an API key, else a service-account key file."""

from __future__ import annotations

from voicebot.config import YandexSettings
from voicebot.providers.yandex.auth import ApiKeyAuth, YandexAuth
from voicebot.providers.yandex.iam import IamTokenAuth


def make_auth(settings: YandexSettings) -> YandexAuth:
    """ApiKeyAuth for `api_key`, IamTokenAuth for `sa_key_file`; neither is an error."""
    if settings.api_key:
        return ApiKeyAuth(settings.api_key)
    if settings.sa_key_file:
        return IamTokenAuth.from_file(
            settings.sa_key_file,
            settings.endpoints.iam_url,
            folder_id=settings.folder_id,
            refresh_margin_s=settings.iam_refresh_margin_s,
        )
    raise ValueError(
        "no Yandex Cloud credentials: set YANDEX_API_KEY or YANDEX_SA_KEY_FILE "
        "(or run against the emulator)"
    )
