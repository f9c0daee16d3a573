"""Voximplant faults of issue 13: a chunk numbering that goes back, the `audio/x-mulaw`
and PCM16-at-8 kHz formats, and the margin between the goodbye and the hang-up."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from voicebot.clock import VirtualClock
from voicebot.transports import g711
from voicebot.transports.voximplant import VoximplantTransport
from voicebot.transports.voximplant_wire import (
    ENCODINGS,
    InboundDecoder,
    MediaEvent,
    ProtocolError,
    StartEvent,
)

TONE = bytes(range(256)) * 2  # 256 samples of distinct 16-bit values (LINEAR16)


def start(encoding: str, rate: int | None) -> str:
    fmt: dict[str, Any] = {"encoding": encoding}
    if rate is not None:
        fmt["sampleRate"] = rate
    return json.dumps({"event": "start", "start": {"mediaFormat": fmt}})


def media(chunk: int, payload: bytes, timestamp: int | None = None) -> str:
    body: dict[str, Any] = {"chunk": chunk, "payload": base64.b64encode(payload).decode()}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return json.dumps({"event": "media", "media": body})


def test_a_restarted_chunk_sequence_is_a_new_run_not_a_deaf_call() -> None:
    d = InboundDecoder()
    d.decode(start("ULAW", 8000))
    frame = bytes([0x55]) * 160
    for k in range(1, 51):
        ev = d.decode(media(k, frame))
        assert isinstance(ev, MediaEvent) and len(ev.pcm) == 320
    # A duplicate and a late frame: their slots were filled already.
    assert d.decode(media(50, frame)) == MediaEvent(b"", 0)
    assert d.decode(media(48, frame)) == MediaEvent(b"", 0)
    # The stream restarts at 1 (a new leg, a re-sent start-less stream): accepted.
    ev = d.decode(media(1, frame))
    assert isinstance(ev, MediaEvent) and ev.restarted and len(ev.pcm) == 320
    for k in range(2, 30):
        ev = d.decode(media(k, frame))
        assert isinstance(ev, MediaEvent) and len(ev.pcm) == 320 and not ev.restarted
    # Losses inside the new run are still concealed.
    ev = d.decode(media(31, frame))
    assert isinstance(ev, MediaEvent) and ev.concealed_samples == 160


@pytest.mark.parametrize("name", ["audio/x-mulaw", "AUDIO/X-MULAW", "ULAW"])
def test_x_mulaw_is_ulaw(name: str) -> None:
    d = InboundDecoder()
    ev = d.decode(start(name, 8000))
    assert isinstance(ev, StartEvent) and ev.encoding is ENCODINGS["ULAW"]
    codes = g711.pcm_to_ulaw(TONE)
    out = d.decode(media(1, codes))
    assert isinstance(out, MediaEvent) and out.pcm == g711.ulaw_to_pcm(codes)


def test_pcm16_at_8000_hz_is_linear_16_bit_at_8_khz() -> None:
    d = InboundDecoder()
    ev = d.decode(start("PCM16", 8000))
    assert isinstance(ev, StartEvent) and ev.encoding.sample_rate == 8000
    assert ev.encoding.bytes_per_sample == 2
    out = d.decode(media(1, TONE))
    assert isinstance(out, MediaEvent) and out.pcm == TONE  # not played at double speed
    # PCM16 without a rate is still the 16 kHz format; other mismatches are refused.
    assert InboundDecoder().decode(start("PCM16", None)).encoding.sample_rate == 16000  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):
        InboundDecoder().decode(start("ULAW", 16000))


@pytest.mark.parametrize("margin_ms", [300, 0])
async def test_the_hang_up_waits_a_margin_after_the_goodbyes_end(margin_ms: int) -> None:
    clock = VirtualClock()
    sent: list[tuple[float, dict[str, Any]]] = []

    async def send_text(text: str) -> None:
        sent.append((clock.monotonic(), json.loads(text)))

    async def close() -> None:
        return None

    t = VoximplantTransport(
        send_text, close, ENCODINGS["ULAW"], clock=clock, hangup_margin_ms=margin_ms
    )
    await t.open()
    await t.play(bytes(8000 * 2))  # a 1 s goodbye
    hang = asyncio.create_task(t.hangup("goodbye"))
    await clock.advance(3, step=0.01)
    await asyncio.wait_for(hang, 1)
    hung = next(at for at, m in sent if m.get("customEvent") == "hangup")
    last_media = max(at for at, m in sent if m.get("event") == "media")
    # Playback of the queued second ends ~1 s in (the pacer's estimate).
    assert hung >= 1.0 + margin_ms / 1000 - 0.03
    assert hung <= 1.0 + margin_ms / 1000 + 0.1
    assert last_media <= 1.0
