"""Yandex Cloud credentials: an API key, or a service-account key exchanged for IAM tokens.

Both give the same small interface, `headers()` and `invalidate()`, so the STT, TTS and
GPT clients never care which one is configured. Secrets never appear in logs or reprs.
"""

from __future__ import annotations

from typing import Protocol


class YandexAuth(Protocol):
    """Request credentials for Yandex Cloud: the `Authorization` header, refreshed as
    needed."""

    async def headers(self) -> list[tuple[str, str]]:
        """`authorization` (and `x-folder-id` where needed) for the next call.

        Lower-case names: valid both as gRPC metadata and HTTP headers.
        """
        ...

    async def invalidate(self) -> None:
        """The service said UNAUTHENTICATED / 401: drop any cached token so the
        next `headers()` fetches a fresh one."""
        ...

    async def aclose(self) -> None:
        """Release what the auth holds (a refresh task, an HTTP client)."""
        ...


class ApiKeyAuth:
    """`Authorization: Api-Key <key>`. No folder header: the key's service account has one."""

    def __init__(self, api_key: str, folder_id: str = "") -> None:
        self._api_key = api_key
        self._folder_id = folder_id

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=***)"

    async def headers(self) -> list[tuple[str, str]]:
        """`Authorization: Api-Key <key>` (never logged)."""
        h = [("authorization", f"Api-Key {self._api_key}")]
        if self._folder_id:
            h.append(("x-folder-id", self._folder_id))
        return h

    async def invalidate(self) -> None:
        """An API key cannot be refreshed; a retry sends the same key."""

    async def aclose(self) -> None:
        """Nothing to release."""
        return None
