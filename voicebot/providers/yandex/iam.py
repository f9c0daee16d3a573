"""Service-account key → IAM token, refreshed in the background well before expiry.

A call never waits for IAM in the steady state: the first `headers()` fetches a token,
after that a background task replaces it at `expiresAt − refresh_margin_s` (but no
earlier than halfway through its lifetime, so short test TTLs still work). After a
401/UNAUTHENTICATED the client calls `invalidate()` and the next `headers()` fetches
synchronously. The private key and tokens never appear in reprs or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from voicebot.clock import Clock, RealClock
from voicebot.providers.base import AuthError, ProviderError
from voicebot.tasks import cancel_and_wait

log = logging.getLogger(__name__)

IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
JWT_LIFETIME_S = 3600  # the IAM maximum for exp − iat
_REQUIRED_FIELDS = ("id", "service_account_id", "private_key")
_HTTP_TIMEOUT_S = 10.0


def _parse_expires_at(value: str) -> float:
    """RFC3339 with up to nanoseconds (`…53.035215444Z`) → unix seconds."""
    value = value.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    head, sep, rest = value.partition(".")
    if sep:  # Python parses at most microseconds: trim the fraction to 6 digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[:digits][:6] + rest[digits:]
        value = f"{head}.{rest}"
    return datetime.fromisoformat(value).timestamp()


class IamTokenAuth:
    """`authorization: Bearer <IAM token>` for a service account's authorized key."""

    def __init__(
        self,
        key: dict[str, Any],
        iam_url: str,
        *,
        folder_id: str = "",
        refresh_margin_s: float = 3600.0,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        missing = [f for f in _REQUIRED_FIELDS if not key.get(f)]
        if missing:
            raise ValueError(f"service-account key lacks {', '.join(missing)}")
        if "-----BEGIN PRIVATE KEY-----" not in key["private_key"]:
            raise ValueError("service-account key: private_key must be a PKCS#8 PEM")
        self._key_id = str(key["id"])
        self._service_account_id = str(key["service_account_id"])
        self._private_key = serialization.load_pem_private_key(
            key["private_key"].encode(), password=None
        )
        self._url = iam_url.rstrip("/") + "/iam/v1/tokens"
        self._folder_id = folder_id
        self._margin = refresh_margin_s
        self._clock: Clock = clock or RealClock()
        self._http = http
        self._own_http = http is None
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0  # clock.monotonic() after which the token is refreshed
        self._expires_at = 0.0  # clock.monotonic() when the token expires
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.fetches = 0  # tokens obtained so far (for tests and metrics)

    @classmethod
    def from_file(cls, path: str | Path, iam_url: str, **kwargs: Any) -> IamTokenAuth:
        """Load a `yc iam key create -o key.json` file."""
        key = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(key, dict):
            raise ValueError(f"{path}: not a service-account key JSON object")
        return cls(key, iam_url, **kwargs)

    def __repr__(self) -> str:
        return f"IamTokenAuth(service_account_id={self._service_account_id!r}, key=***)"

    # ------------------------------------------------------------------ YandexAuth

    async def headers(self) -> list[tuple[str, str]]:
        """`Authorization: Bearer <IAM token>`, exchanging the key for a fresh token when
        needed."""
        token = await self._current_token()
        h = [("authorization", f"Bearer {token}")]
        if self._folder_id:
            h.append(("x-folder-id", self._folder_id))
        return h

    async def invalidate(self) -> None:
        """Drop the current token (the server refused it): the next request gets a new one."""
        self._token = None

    async def aclose(self) -> None:
        """Stop the refresh task and close the HTTP client."""
        self._closed = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------ internals

    def _fresh(self) -> bool:
        return self._token is not None and self._clock.monotonic() < self._refresh_at

    async def _current_token(self) -> str:
        if self._closed:
            raise ProviderError("IamTokenAuth is closed", code="CLOSED", provider="yandex")
        token = self._token
        if token is not None and self._fresh():
            return token
        async with self._lock:
            if not self._fresh():
                await self._fetch()
            assert self._token is not None
            return self._token

    def _jwt(self) -> str:
        # Wall time, not the injected clock: the IAM checks iat/exp against real time.
        now = int(time.time())
        claims = {
            "iss": self._service_account_id,
            "aud": IAM_AUDIENCE,
            "iat": now,
            "exp": now + JWT_LIFETIME_S,
        }
        return jwt.encode(
            claims, self._private_key, algorithm="PS256", headers={"kid": self._key_id}
        )  # type: ignore[arg-type]

    async def _fetch(self) -> None:
        """Exchange a new JWT for a token. Caller holds the lock."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S)
        try:
            resp = await self._http.post(self._url, json={"jwt": self._jwt()})
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"IAM unreachable: {type(exc).__name__}",
                code="UNAVAILABLE",
                retriable=True,
                provider="yandex",
            ) from None
        if resp.status_code != 200:
            raise _iam_error(resp)
        try:
            body = resp.json()
            token = body["iamToken"]
            expires = _parse_expires_at(body["expiresAt"])
        except (ValueError, KeyError, TypeError):
            raise ProviderError(
                "IAM returned an unexpected body", code="MALFORMED", provider="yandex"
            ) from None
        lifetime = max(0.0, expires - time.time())
        now = self._clock.monotonic()
        self._token = token
        self._expires_at = now + lifetime
        self._refresh_at = now + max(lifetime - self._margin, lifetime / 2)
        self.fetches += 1
        log.info(
            "IAM token obtained for %s, valid %.0f s, refresh in %.0f s",
            self._service_account_id,
            lifetime,
            self._refresh_at - now,
        )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresher(), name="iam-token-refresh")

    async def _refresher(self) -> None:
        """Replace the token before it expires so no call ever waits on IAM."""
        failures = 0
        while not self._closed:
            delay = self._refresh_at - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
                continue
            try:
                async with self._lock:
                    if self._clock.monotonic() >= self._refresh_at:
                        await self._fetch()
                failures = 0
            except ProviderError as exc:
                failures += 1
                remaining = self._expires_at - self._clock.monotonic()
                backoff = min(30.0, 0.5 * 2 ** min(failures, 6), max(0.1, remaining / 4))
                log.warning("IAM token refresh failed (%s); retry in %.1f s", exc.code, backoff)
                await self._clock.sleep(backoff)


def _iam_error(resp: httpx.Response) -> ProviderError:
    try:
        message = str(resp.json().get("message", ""))
    except ValueError:
        message = ""
    text = f"IAM token exchange failed: HTTP {resp.status_code} {message}".strip()
    if resp.status_code in (400, 401, 403, 404):
        return AuthError(text, code="UNAUTHENTICATED", provider="yandex")
    if resp.status_code == 429:
        return ProviderError(text, code="RESOURCE_EXHAUSTED", retriable=True, provider="yandex")
    return ProviderError(
        text, code="UNAVAILABLE", retriable=resp.status_code >= 500, provider="yandex"
    )
