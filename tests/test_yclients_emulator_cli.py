"""`voicebot yclients-emulator --port P` runs the test double on its own: it prints its
URL and tokens, answers with the envelope, and refuses requests without the tokens."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


async def test_standalone_emulator() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicebot.cli",
        "yclients-emulator",
        "--port",
        str(port),
        "--now",
        "2026-11-23T10:00:00+03:00",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        tokens = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        assert "TEST DOUBLE" in banner and f":{port}/api/v1" in banner
        partner = re.search(r"YCLIENTS_PARTNER_TOKEN=(\S+)", tokens).group(1)  # type: ignore[union-attr]
        user = re.search(r"YCLIENTS_USER_TOKEN=(\S+)", tokens).group(1)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}/api/v1"
        accept = {"Accept": "application/vnd.yclients.v2+json"}
        async with httpx.AsyncClient() as http:
            r = await http.get(
                f"{base}/book_times/4242/101/2026-11-24",
                params={"service_ids[]": 1},
                headers={**accept, "Authorization": f"Bearer {partner}, User {user}"},
            )
            body = r.json()
            assert r.status_code == 200 and body["success"] is True
            assert body["data"][0] == {
                "time": "09:00",
                "seance_length": 1800,
                "datetime": "2026-11-24T09:00:00+03:00",
            }
            r = await http.get(
                f"{base}/book_staff/4242", headers={**accept, "Authorization": "Bearer nope"}
            )
            assert r.status_code == 401 and r.json()["success"] is False
    finally:
        proc.terminate()
        await proc.wait()
