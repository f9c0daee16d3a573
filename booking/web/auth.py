"""Who may see the salon's page: the admin token, its session cookie, CSRF tokens.

Stateless on purpose (several `serve` processes share one PostgreSQL store behind a
proxy): the session cookie is `<expiry>.<HMAC-SHA256(token, "session|expiry")>`, so it
is valid on every process and dies when the token changes. The CSRF token of a form is
an HMAC of the session cookie (the synchronizer-token pattern without server state,
OWASP CSRF cheat sheet "signed double-submit"). Scripts send
`Authorization: Bearer <token>` instead; that header cannot be forged cross-site, so
bearer requests need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from aiohttp import web

COOKIE = "vb_admin"
SESSION_TTL_S = 12 * 3600


def _sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AdminAuth:
    """Checks one secret (env VOICEBOT_ADMIN_TOKEN); `now` is injectable for tests."""

    token: str

    def token_ok(self, given: str | None) -> bool:
        """Constant-time comparison with the configured token."""
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    def new_session(self, now: float | None = None) -> str:
        """A session cookie value valid for SESSION_TTL_S seconds."""
        expiry = int((time.time() if now is None else now) + SESSION_TTL_S)
        return f"{expiry}.{_sign(self.token, f'session|{expiry}')}"

    def session_ok(self, value: str | None, now: float | None = None) -> bool:
        """True for an unexpired cookie signed with the current token."""
        if not value or "." not in value:
            return False
        expiry, _, sig = value.partition(".")
        if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(sig, _sign(self.token, f"session|{expiry}"))

    def csrf_for(self, session: str) -> str:
        """The CSRF token forms of this session carry."""
        return _sign(self.token, f"csrf|{session}")

    def csrf_ok(self, session: str | None, given: str | None) -> bool:
        """True when `given` is this session's CSRF token."""
        return bool(session and given) and hmac.compare_digest(
            str(given), self.csrf_for(str(session))
        )

    def bearer(self, request: web.Request) -> str | None:
        """The token of an `Authorization: Bearer ...` header, if any."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def who(self, request: web.Request) -> str | None:
        """How the request is authenticated: "bearer", "cookie", or None."""
        if (given := self.bearer(request)) is not None:
            return "bearer" if self.token_ok(given) else None
        return "cookie" if self.session_ok(request.cookies.get(COOKIE)) else None

    def set_cookie(self, response: web.StreamResponse, request: web.Request) -> None:
        """The session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, /admin only."""
        response.set_cookie(
            COOKIE,
            self.new_session(),
            max_age=SESSION_TTL_S,
            path="/admin",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
