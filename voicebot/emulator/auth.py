"""Credential checks of the Yandex Cloud emulator (a test double).

One object is shared by the STT, TTS and GPT services so that an IAM token issued by
the emulator's IAM endpoint is accepted everywhere, exactly like the real cloud, and a
revoked or expired one is refused everywhere.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable

_BEARER = "bearer"
_API_KEY = "api-key"


class EmulatorAuth:
    """Accepts `Api-Key <key>` and `Bearer <IAM token issued here>`; nothing else.

    With no key configured any non-empty API key passes, so a developer can point the
    bot at the emulator without inventing a secret.
    """

    def __init__(
        self, api_key: str | None = None, *, time_fn: Callable[[], float] = time.time
    ) -> None:
        self._api_key = api_key or None
        self._time = time_fn
        self._tokens: dict[str, float] = {}  # token -> expiry (unix seconds)

    def __repr__(self) -> str:
        return (
            f"EmulatorAuth(api_key={'***' if self._api_key else None}, tokens={len(self._tokens)})"
        )

    def check(self, authorization: str | None) -> bool:
        """True for `Api-Key <key>` matching the configured key (any key when none is) or a
        live IAM token."""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if not value:
            return False
        scheme = scheme.lower()
        if scheme == _API_KEY:
            if self._api_key is None:
                return True
            return hmac.compare_digest(value.encode(), self._api_key.encode())
        if scheme == _BEARER:
            expiry = self._tokens.get(value)
            return expiry is not None and self._time() < expiry
        return False

    # ---------------------------------------------------------------- IAM tokens

    def issue_token(self, ttl_s: float) -> tuple[str, float]:
        """A fresh token in the documented `t1.<...>.<86 chars>` shape, and its expiry."""
        token = f"t1.{secrets.token_urlsafe(48)}.{secrets.token_urlsafe(64)}"
        expiry = self._time() + ttl_s
        self._tokens[token] = expiry
        self._prune()
        return token, expiry

    def revoke_token(self, token: str) -> bool:
        """Revoke one IAM token; True when it existed."""
        return self._tokens.pop(token, None) is not None

    def revoke_all_tokens(self) -> int:
        """Simulate every issued token expiring at once (tests of the 401 → refresh path)."""
        n = len(self._tokens)
        self._tokens.clear()
        return n

    @property
    def active_tokens(self) -> int:
        """IAM tokens issued and not expired."""
        now = self._time()
        return sum(1 for exp in self._tokens.values() if exp > now)

    def _prune(self) -> None:
        now = self._time()
        for tok in [t for t, exp in self._tokens.items() if exp <= now]:
            del self._tokens[tok]
