"""`telephony.voximplant.chunk_ms`: bot audio goes out in fewer, longer media messages
(Voximplant accepts any length and replays 20 ms frames itself), with the stream's
counters exactly as with 20 ms chunks: chunk +1, timestamp = samples sent before."""

from __future__ import annotations

import asyncio
import base64
import json

from voicebot.config import load_config
from voicebot.transports import g711
from voicebot.transports.voximplant import VoximplantTransport
from voicebot.transports.voximplant_wire import ENCODINGS


async def test_bot_audio_goes_out_in_chunk_ms_messages() -> None:
    sent: list[dict] = []

    async def send_text(text: str) -> None:
        sent.append(json.loads(text))

    async def close() -> None:
        return None

    t = VoximplantTransport(send_text, close, ENCODINGS["ULAW"], chunk_ms=100)
    await t.open()
    try:
        await t.play(bytes(g711.pcm_bytes(8000, 1000)))  # 1 s of bot audio
        for _ in range(200):
            if sum(1 for m in sent if m["event"] == "media") >= 10:
                break
            await asyncio.sleep(0.01)
    finally:
        await t.aclose()
    media = [m["media"] for m in sent if m["event"] == "media"]
    assert len(media) == 10  # 1 s in 100 ms messages, not 50 of 20 ms
    assert [m["chunk"] for m in media] == list(range(10))
    assert [m["timestamp"] for m in media] == [800 * i for i in range(10)]
    assert all(len(base64.b64decode(m["payload"])) == 800 for m in media)  # μ-law bytes


def test_the_shipped_config_sends_200_ms_chunks() -> None:
    assert load_config(env={}).telephony.voximplant.chunk_ms == 200
