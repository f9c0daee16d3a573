"""The shipped nginx site (scripts/deploy/nginx/voicebot.conf) in front of two workers.

The Debian nginx package runs the real site file, rewritten only where a test must:
loopback ports, a self-signed certificate made here, the upstream's port, and a
private prefix for pid/logs/temp files. Through it, over TLS: a browser-protocol call
and a Voximplant call; the AudioSocket register endpoint is not reachable; client
addresses come from X-Forwarded-For only because the proxy is trusted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fake_voximplant import FakeVoximplant
from tests.test_ops_workers import REPO, free_port, health_pids, start_serve, stop, write_config

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
SITE = REPO / "scripts/deploy/nginx/voicebot.conf"
VOX_SECRET = "s3cret"
REGISTER_SECRET = "reg-s3cret"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="needs nginx (scripts/setup.sh installs it)"),
]


def make_cert(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for voicebot.example.ru and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voicebot.example.ru")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("voicebot.example.ru"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = d / "cert.pem", d / "key.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


def site_for_test(d: Path, app_port: int, http_port: int, tls_port: int) -> Path:
    """The shipped site with loopback ports, the test certificate and the app's port."""
    crt, key = make_cert(d)
    text = SITE.read_text(encoding="utf-8")
    subs = [
        (r"listen \[::\]:80;\n", ""),
        (r"listen \[::\]:443 ssl;\n", ""),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        (r"ssl_certificate\s+\S+;", f"ssl_certificate {crt};"),
        (r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};"),
        (r"server 127\.0\.0\.1:8080", f"server 127.0.0.1:{app_port}"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n >= 1, f"the site file no longer has {pattern!r}"
    site = d / "site.conf"
    site.write_text(text, encoding="utf-8")
    main = d / "nginx.conf"
    temp = "".join(
        f"    {k}_temp_path {d / k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {d / 'nginx.pid'};\n"
        f"error_log {d / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {d / 'access.log'};\n{temp}    include {site};\n}}\n",
        encoding="utf-8",
    )
    return main


async def wait_port(port: int, within: float = 20) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"port {port} not up")


def start_nginx(main: Path, d: Path) -> subprocess.Popen[bytes]:
    """`nginx -t` on the config, then nginx in the foreground."""
    assert NGINX is not None
    err = ["-e", str(d / "error.log")]
    check = subprocess.run([NGINX, "-t", "-c", str(main), *err], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(
        [NGINX, "-c", str(main), *err], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


class TlsVoximplant(FakeVoximplant):
    """The fake VoxEngine scenario, connecting over TLS with our test CA."""

    def __init__(self, url: str, ctx: ssl.SSLContext, **kw: object) -> None:
        super().__init__(url, **kw)  # type: ignore[arg-type]
        self._ctx = ctx

    async def connect(self) -> None:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ctx))
        headers = {"Authorization": f"Bearer {self.bearer}"}
        self.ws = await self.http.ws_connect(
            self.url, headers=headers, protocols=("chat",), max_msg_size=0
        )
        self._reader = asyncio.create_task(self._read())


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, object]]:
    app_port, http_port, tls_port = free_port(), free_port(), free_port()
    cfg = write_config(
        tmp_path,
        app_port,
        trusted_proxies=["127.0.0.1"],
        ws_connections_per_address=1,
    )
    log = tmp_path / "serve.log"
    env = {"VOICEBOT_AUDIOSOCKET_SECRET": REGISTER_SECRET}
    serve = start_serve(cfg, log, "--workers", "2", env_extra=env)
    nginx_dir = tmp_path / "nginx"
    nginx_dir.mkdir()
    nginx = start_nginx(site_for_test(nginx_dir, app_port, http_port, tls_port), nginx_dir)
    ctx = ssl.create_default_context(cafile=str(nginx_dir / "cert.pem"))
    try:
        await wait_port(tls_port)
        async with aiohttp.ClientSession() as http:
            pids = await health_pids(http, app_port, 2, within=90)
            assert len(pids) == 2, log.read_text()[-3000:]
        yield {"tls": tls_port, "http": http_port, "app": app_port, "ctx": ctx, "log": log}
    finally:
        nginx.terminate()
        nginx.wait(10)
        assert stop(serve, within=30) == 0, log.read_text()[-3000:]


async def browser_call(http: aiohttp.ClientSession, url: str) -> dict[str, object]:
    """A short browser-protocol call by text; its `done` summary."""
    async with http.ws_connect(url) as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000})
        played = 0.0
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    played += len(msg.data) / 32
                    await ws.send_json({"type": "playback", "played_ms": played})
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                ev = json.loads(msg.data)
                if ev["type"] == "turn" and ev["turn_id"] == "t1":
                    await ws.send_json({"type": "text", "text": "Хочу записаться"})
                elif ev["type"] == "turn":
                    await ws.send_json({"type": "stop"})
                elif ev["type"] == "done":
                    return dict(ev["summary"])
    raise AssertionError("the call did not finish")


async def test_calls_through_nginx_and_register_is_not_reachable(stack: dict) -> None:
    tls, ctx = stack["tls"], stack["ctx"]
    base = f"https://127.0.0.1:{tls}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        # Plain HTTP is redirected to TLS.
        async with http.get(f"http://127.0.0.1:{stack['http']}/", allow_redirects=False) as r:
            assert r.status == 301 and r.headers["Location"].startswith("https://")
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        summary = await browser_call(http, f"wss://127.0.0.1:{tls}/ws")
        assert summary["reason"] == "caller_hangup" and summary["turns"] >= 2

        # A Voximplant call over wss through the proxy: the bot's greeting streams back.
        vox = TlsVoximplant(f"wss://127.0.0.1:{tls}/voximplant", ctx, bearer=VOX_SECRET)
        await vox.connect()
        try:
            await vox.start()
            await vox.stream(bytes(3200 * 10), realtime=True)  # 1 s of silence
            for _ in range(100):
                if vox.bot.media > 10:
                    break
                await asyncio.sleep(0.1)
            assert vox.bot.start is not None and vox.bot.media > 10
            assert vox.bot.violations == []
            await vox.stop()
        finally:
            await vox.aclose()

        # The register endpoint: 404 through the proxy, whatever the secret.
        auth = {"Authorization": f"Bearer {REGISTER_SECRET}"}
        body = {"uuid": "6f1c2b4e-8d2a-4c3e-9b1a-2f4d5e6a7b8c", "caller_id": "+79161234567"}
        async with http.post(f"{base}/audiosocket/register", json=body, headers=auth) as r:
            assert r.status == 404
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 404
    # Directly on the app: the secret is required, and a relayed request is refused.
    app = f"http://127.0.0.1:{stack['app']}/audiosocket/register"
    async with aiohttp.ClientSession() as direct:
        async with direct.post(app, json=body) as r:
            assert r.status == 403
        fwd = {**auth, "X-Forwarded-For": "203.0.113.9"}
        async with direct.post(app, json=body, headers=fwd) as r:
            assert r.status == 403
        async with direct.post(app, json=body, headers=auth) as r:
            assert r.status == 200


async def test_client_addresses_come_from_the_trusted_proxy(stack: dict) -> None:
    """ws_connections_per_address is 1 per worker (two workers): the app tells clients
    apart only by the proxy's X-Forwarded-For, since every TCP peer is nginx."""
    url = f"wss://127.0.0.1:{stack['tls']}/ws"

    async def open_from(addr: str) -> tuple[aiohttp.ClientSession, object]:
        conn = aiohttp.TCPConnector(ssl=stack["ctx"], local_addr=(addr, 0))
        session = aiohttp.ClientSession(connector=conn)
        try:
            return session, await session.ws_connect(url)
        except aiohttp.WSServerHandshakeError as e:
            await session.close()
            return session, e.status

    opened = [await open_from(f"127.0.0.{i}") for i in (2, 3, 4)]
    try:
        # Three addresses, one connection each: all accepted.
        assert all(not isinstance(ws, int) for _, ws in opened), opened
        same = [await open_from("127.0.0.2") for _ in range(2)]
        opened += same
        # The same address again: the worker that already holds its connection says 429.
        assert 429 in [ws for _, ws in same], same
    finally:
        for session, ws in opened:
            if not isinstance(ws, int):
                await ws.close()  # type: ignore[attr-defined]
            await session.close()
