"""IamTokenAuth and the emulator's IAM: real PS256 JWTs, token refresh, 401 recovery."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulator_fixtures import emulator, start_emulator  # noqa: F401  (fixture)
from voicebot.clock import VirtualClock
from voicebot.config import YandexEndpoints, YandexSettings
from voicebot.emulator import Emulator
from voicebot.providers.base import AuthError, ChatMessage, SynthesisOptions
from voicebot.providers.yandex.auth import ApiKeyAuth
from voicebot.providers.yandex.factory import make_auth
from voicebot.providers.yandex.gpt import YandexGPT
from voicebot.providers.yandex.iam import IAM_AUDIENCE, IamTokenAuth, _parse_expires_at
from voicebot.providers.yandex.tts import YandexTTS

TOKEN_RE = re.compile(r"t1\.[A-Z0-9a-z_-]+[=]{0,2}\.[A-Z0-9a-z_-]{86}[=]{0,2}")
HELLO = [ChatMessage("user", "привет")]


def signed(key: dict, *, private_pem: str | None = None, **claims: object) -> str:
    now = int(time.time())
    payload = {
        "iss": key["service_account_id"],
        "aud": IAM_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    pem = private_pem or key["private_key"]
    return jwt.encode(payload, pem, algorithm="PS256", headers={"kid": key["id"]})


async def exchange(emu: Emulator, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(emu.http_url + "/iam/v1/tokens", json={"jwt": token})


async def test_sa_key_gets_token_usable_everywhere(emulator: Emulator) -> None:  # noqa: F811
    key = emulator.iam.create_sa_key()
    assert set(key) == {
        "id",
        "service_account_id",
        "created_at",
        "key_algorithm",
        "public_key",
        "private_key",
    }
    assert key["key_algorithm"] == "RSA_2048"
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")

    auth = IamTokenAuth(key, emulator.http_url)
    try:
        headers = dict(await auth.headers())
        assert TOKEN_RE.fullmatch(headers["authorization"].removeprefix("Bearer "))
        assert "x-folder-id" not in headers
        assert dict(await auth.headers()) == headers, "cached, not fetched per call"
        assert auth.fetches == 1

        gpt = YandexGPT(emulator.http_url, auth, folder_id="b1gfolder")
        assert (await gpt.complete(HELLO)).text == "Эхо: привет"
        await gpt.aclose()
        tts = YandexTTS(emulator.tts_endpoint, auth, tls=False)
        pcm = b"".join([c async for c in tts.synthesize("Привет", SynthesisOptions())])
        await tts.aclose()
        assert len(pcm) > 1000
    finally:
        await auth.aclose()
    assert "PRIVATE" not in repr(auth) and headers["authorization"] not in repr(auth)


async def test_expires_at_is_rfc3339_nanoseconds(emulator: Emulator) -> None:  # noqa: F811
    key = emulator.iam.create_sa_key()
    r = await exchange(emulator, signed(key))
    assert r.status_code == 200
    body = r.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", body["expiresAt"])
    ttl = _parse_expires_at(body["expiresAt"]) - time.time()
    assert abs(ttl - emulator.settings.iam_token_ttl_s) < 60


def test_parse_expires_at() -> None:
    assert _parse_expires_at("2021-10-22T05:54:53.035215444Z") == pytest.approx(
        1634882093.035215, abs=1e-6
    )
    assert _parse_expires_at("2021-10-22T05:54:53Z") == 1634882093.0


async def test_emulator_rejects_bad_jwts(emulator: Emulator) -> None:  # noqa: F811
    key = emulator.iam.create_sa_key()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    now = int(time.time())
    cases = {
        "wrong signature": (signed(key, private_pem=other_pem), 401),
        "wrong aud": (signed(key, aud="https://example.com/tokens"), 401),
        "wrong iss": (signed(key, iss="ajeotheraccount000000"), 401),
        "expired": (signed(key, iat=now - 7200, exp=now - 3700), 401),
        "exp - iat > 3600": (signed(key, iat=now, exp=now + 3601), 400),
        "unknown kid": (signed({**key, "id": "ajfunknownkey0000000"}), 401),
        "not a jwt": ("abc.def", 400),
    }
    for name, (token, status) in cases.items():
        r = await exchange(emulator, token)
        assert r.status_code == status, name
        body = r.json()
        assert body["code"] == (16 if status == 401 else 3), name
        assert body["message"], name
    assert emulator.iam.tokens_issued == 0
    assert (await exchange(emulator, signed(key))).status_code == 200


async def test_unregistered_key_is_auth_error(emulator: Emulator) -> None:  # noqa: F811
    key = emulator.iam.create_sa_key()
    other = start_emulator()
    async with other as emu2:
        auth = IamTokenAuth(key, emu2.http_url)  # emu2 never saw this key
        with pytest.raises(AuthError):
            await auth.headers()
        await auth.aclose()


async def test_background_refresh_before_expiry() -> None:
    async with start_emulator(iam_token_ttl_s=2.0) as emu:
        key = emu.iam.create_sa_key()
        auth = IamTokenAuth(key, emu.http_url, refresh_margin_s=1.0)
        gpt = YandexGPT(emu.http_url, auth, folder_id="f")
        tokens = set()
        try:
            for _ in range(13):  # ~2.6 s: past the first token's 2 s lifetime
                tokens.add(dict(await auth.headers())["authorization"])
                assert (await gpt.complete(HELLO)).text == "Эхо: привет"
                await asyncio.sleep(0.2)
        finally:
            await gpt.aclose()
            await auth.aclose()
        assert auth.fetches >= 2 and len(tokens) >= 2
        assert all(r.outcome == "OK" for r in emu.gpt.requests), "no call ever failed"


async def test_refresh_schedule_on_virtual_clock(emulator: Emulator) -> None:  # noqa: F811
    """12 h tokens, 1 h margin: refreshed at 11 h of (virtual) time, not before."""
    clock = VirtualClock()
    auth = IamTokenAuth(
        emulator.iam.create_sa_key(), emulator.http_url, refresh_margin_s=3600, clock=clock
    )
    emulator.settings.iam_token_ttl_s = 12 * 3600
    try:
        first = await auth.headers()
        await clock.advance(10.9 * 3600)
        await asyncio.sleep(0.05)
        assert auth.fetches == 1 and await auth.headers() == first
        await clock.advance(0.2 * 3600)
        for _ in range(200):  # the refresh is a real HTTP round trip
            if auth.fetches == 2:
                break
            await asyncio.sleep(0.01)
        assert auth.fetches == 2
        assert await auth.headers() != first
    finally:
        await auth.aclose()


async def test_revoked_token_401_invalidate_and_recover(emulator: Emulator) -> None:  # noqa: F811
    auth = IamTokenAuth(emulator.iam.create_sa_key(), emulator.http_url, folder_id="b1gfolder")
    gpt = YandexGPT(emulator.http_url, auth, folder_id="b1gfolder")
    tts = YandexTTS(emulator.tts_endpoint, auth, tls=False)
    try:
        assert (await gpt.complete(HELLO)).text == "Эхо: привет"
        assert emulator.iam.revoke_all_tokens() == 1
        assert (await gpt.complete(HELLO)).text == "Эхо: привет"
        assert [r.outcome for r in emulator.gpt.requests] == ["OK", "UNAUTHENTICATED", "OK"]
        assert auth.fetches == 2
        emulator.iam.revoke_all_tokens()
        pcm = b"".join([c async for c in tts.synthesize("Привет", SynthesisOptions())])
        assert len(pcm) > 1000 and auth.fetches == 3
        assert all(r.folder_id == "b1gfolder" for r in emulator.gpt.requests)
    finally:
        await tts.aclose()
        await gpt.aclose()
        await auth.aclose()


def test_key_validation_and_make_auth(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="private_key"):
        IamTokenAuth({"id": "a", "service_account_id": "b"}, "http://127.0.0.1:1")
    assert isinstance(make_auth(YandexSettings(api_key="k")), ApiKeyAuth)
    with pytest.raises(ValueError, match="credentials"):
        make_auth(YandexSettings())

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = {
        "id": "ajfkey",
        "service_account_id": "ajesa",
        "private_key": private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    settings = YandexSettings(
        sa_key_file=str(path), endpoints=YandexEndpoints(iam_url="http://127.0.0.1:1")
    )
    auth = make_auth(settings)
    assert isinstance(auth, IamTokenAuth)
    assert "BEGIN" not in repr(auth)
