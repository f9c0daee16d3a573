"""IAM token exchange of the emulator (a test double of `POST /iam/v1/tokens`).

Verifies a service-account JWT the way the real IAM does (PS256 signature with the
key's public half, `iss`, `aud`, at most one hour between `iat` and `exp`) so the
production `IamTokenAuth` is exercised against real cryptography, not a stub.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from voicebot.config import EmulatorSettings
from voicebot.emulator.auth import EmulatorAuth

log = logging.getLogger(__name__)

IAM_AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
MAX_JWT_LIFETIME_S = 3600
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _cloud_id(prefix: str) -> str:
    """A 20-character id shaped like Yandex Cloud ids (`aje…`, `ajf…`)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20 - len(prefix)))


def rfc3339_nanos(ts: float) -> str:
    """`2021-10-22T05:54:53.035215444Z`: the nanosecond form the real IAM returns."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}000Z"


@dataclass(frozen=True, slots=True)
class _RegisteredKey:
    key_id: str
    service_account_id: str
    public_key: Any


class IamError(Exception):
    """An IAM request refused: its HTTP status and the error body."""

    def __init__(self, http_status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class IamEmulator:
    """Registered service-account keys and the JWT → IAM token exchange."""

    def __init__(self, settings: EmulatorSettings, auth: EmulatorAuth) -> None:
        self._settings = settings
        self._auth = auth
        self._keys: dict[str, _RegisteredKey] = {}
        self.tokens_issued = 0

    def create_sa_key(self, service_account_id: str | None = None) -> dict[str, str]:
        """A new key JSON in the `yc iam key create` format, registered here."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        key = {
            "id": _cloud_id("ajf"),
            "service_account_id": service_account_id or _cloud_id("aje"),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "key_algorithm": "RSA_2048",
            "public_key": public_pem,
            "private_key": private_pem,
        }
        self.register_key(key)
        return key

    def register_key(self, key: dict[str, str]) -> None:
        """Accept JWTs signed with an existing key JSON (only its public half is kept)."""
        public = serialization.load_pem_public_key(key["public_key"].encode())
        self._keys[key["id"]] = _RegisteredKey(key["id"], key["service_account_id"], public)

    def revoke_all_tokens(self) -> int:
        """Expire every IAM token at once (tests of the refresh path); how many there were."""
        return self._auth.revoke_all_tokens()

    def exchange(self, token: str) -> dict[str, str]:
        """JWT → `{"iamToken", "expiresAt"}`; raises IamError like the real endpoint."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise IamError(400, 3, f"Invalid JWT: {exc}") from None
        if header.get("alg") != "PS256":
            raise IamError(400, 3, "Unsupported JWT algorithm: only PS256 is allowed")
        kid = header.get("kid")
        key = self._keys.get(kid or "")
        if key is None:
            raise IamError(401, 16, f"Key '{kid}' was not found")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=["PS256"],
                audience=IAM_AUDIENCE,
                options={"require": ["iss", "aud", "iat", "exp"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise IamError(401, 16, "JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise IamError(401, 16, "Invalid JWT audience") from None
        except jwt.InvalidSignatureError:
            raise IamError(401, 16, "JWT signature validation failed") from None
        except jwt.PyJWTError as exc:
            raise IamError(401, 16, f"Invalid JWT: {exc}") from None
        if claims["iss"] != key.service_account_id:
            raise IamError(401, 16, f"Key '{kid}' does not belong to '{claims['iss']}'")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_JWT_LIFETIME_S:
            raise IamError(400, 3, "JWT lifetime (exp - iat) must not exceed 3600 seconds")
        iam_token, expiry = self._auth.issue_token(self._settings.iam_token_ttl_s)
        self.tokens_issued += 1
        log.info("emulator IAM: token issued for service account %s", key.service_account_id)
        return {"iamToken": iam_token, "expiresAt": rfc3339_nanos(expiry)}

    async def handle_create(self, request: web.Request) -> web.Response:
        """`POST /iam/v1/tokens`: a signed JWT for a registered key -> an IAM token."""
        try:
            body = await request.json()
        except ValueError:
            return _error(IamError(400, 3, "Request body is not valid JSON"))
        if not isinstance(body, dict) or not isinstance(body.get("jwt"), str) or not body["jwt"]:
            return _error(IamError(400, 3, "jwt: required field is missing"))
        if len(body["jwt"]) > 8000:
            return _error(IamError(400, 3, "jwt: length must be at most 8000"))
        try:
            return web.json_response(self.exchange(body["jwt"]))
        except IamError as exc:
            return _error(exc)

    async def handle_revoke(self, request: web.Request) -> web.Response:
        """Revoke one IAM token (`{"iamToken": ...}`); 401 for an unknown one."""
        try:
            body = await request.json()
        except ValueError:
            return _error(IamError(400, 3, "Request body is not valid JSON"))
        token = body.get("iamToken") or body.get("iam_token") if isinstance(body, dict) else None
        if not token or not self._auth.revoke_token(token):
            return _error(IamError(401, 16, "The token is invalid"))
        return web.json_response({"subjectId": ""})


def _error(exc: IamError) -> web.Response:
    return web.json_response(
        {"code": exc.code, "message": str(exc), "details": []}, status=exc.http_status
    )
