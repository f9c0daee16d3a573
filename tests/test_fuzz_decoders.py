"""Property-based fuzzing of the pure inbound decoders: Voximplant messages, AudioSocket
frames, dialogue YAML.

The property: whatever arrives, a decoder either returns a typed value or raises its
own documented error (`ProtocolError`, `ValueError`); never anything else. CI runs a
small budget; `VOICEBOT_FUZZ_EXAMPLES=10000` is the full run (see tests/fuzz_support.py).
"""

from __future__ import annotations

import base64
import json
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz_support import FUZZ, json_values, objects_with
from voicebot.simulate import load_script
from voicebot.transports import audiosocket_wire as asw
from voicebot.transports.errors import ProtocolError
from voicebot.transports.voximplant_wire import (
    CustomEvent,
    InboundDecoder,
    MediaEvent,
    StartEvent,
    StopEvent,
)

pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------- Voximplant

b64 = st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode())
start_msgs = st.builds(
    lambda start, top: {"event": "start", **top, "start": start},
    objects_with(
        {
            "mediaFormat": objects_with(
                {
                    "encoding": st.sampled_from(["ULAW", "ALAW", "PCM8", "PCM16", "OPUS", ""]),
                    "sampleRate": st.sampled_from([8000, 16000, 48000, 0, -1]),
                }
            ),
            "customParameters": st.dictionaries(st.text(max_size=8), st.text(max_size=8)),
            "tag": st.text(max_size=5),
        }
    ),
    st.dictionaries(st.sampled_from(["sequenceNumber", "tag"]), json_values, max_size=2),
)
media_msgs = st.builds(
    lambda media: {"event": "media", "media": media},
    objects_with(
        {
            "payload": b64 | st.text(max_size=20),
            "chunk": st.integers(-5, 2**40),
            "timestamp": st.integers(-5, 2**40),
        }
    ),
)
vox_messages = st.one_of(
    start_msgs.map(json.dumps),
    media_msgs.map(json.dumps),
    st.just(json.dumps({"event": "stop", "stop": {"mediaInfo": {}}})),
    objects_with({"event": st.text(max_size=8), "customEvent": st.text(max_size=8)}).map(
        json.dumps
    ),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.just("[" * 5000),
)


@FUZZ
@given(st.lists(vox_messages, min_size=1, max_size=12))
def test_voximplant_decoder_raises_only_protocol_errors(messages: list[str]) -> None:
    decoder = InboundDecoder()
    for text in messages:
        try:
            event = decoder.decode(text)
        except ProtocolError as exc:
            assert exc.args  # a code and a message for the error event
            continue
        if isinstance(event, MediaEvent):
            assert len(event.pcm) % 2 == 0
        assert isinstance(event, StartEvent | MediaEvent | StopEvent | CustomEvent)


# --------------------------------------------------------------------------- AudioSocket

frames = st.one_of(
    st.builds(
        lambda kind, payload: struct.pack(">BH", kind, len(payload)) + payload,
        st.sampled_from([0x00, 0x01, 0x03, 0x10, 0xFF, 0x02, 0x7F]),
        st.binary(max_size=700),
    ),
    st.builds(  # a header that lies about its length
        lambda kind, n, payload: struct.pack(">BH", kind, n) + payload,
        st.integers(0, 255),
        st.integers(0, 65535),
        st.binary(max_size=50),
    ),
    st.binary(max_size=8),
)


@FUZZ
@given(st.lists(frames, max_size=10).map(b"".join), st.integers(1, 64))
def test_audiosocket_frames_decode_or_raise_protocol_error(data: bytes, step: int) -> None:
    """Fed in arbitrary pieces (TCP keeps no message boundaries), the incremental
    decoder yields typed messages or raises ProtocolError, and what it decoded
    re-encodes to the bytes it consumed."""
    decoder = asw.FrameDecoder()
    got: list[asw.AudioSocketMessage] = []
    try:
        for i in range(0, len(data), step):
            got += decoder.feed(data[i : i + step])
    except ProtocolError:
        return
    consumed = len(data) - decoder.pending
    wire = _split(data[:consumed])
    assert len(wire) == len(got)
    for (kind, payload), m in zip(wire, got, strict=True):
        if isinstance(m, asw.ErrorMessage):  # only the code byte is kept
            assert kind == asw.KIND_ERROR and m.code == (payload[0] if payload else 0)
        elif isinstance(m, asw.HangupMessage):  # a hang-up's payload means nothing
            assert kind == asw.KIND_HANGUP
        else:
            assert _encode(m) == asw.encode_frame(kind, payload)


def _split(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(data):
        kind, n = struct.unpack(">BH", data[i : i + 3])
        out.append((kind, data[i + 3 : i + 3 + n]))
        i += 3 + n
    return out


def _encode(m: asw.AudioSocketMessage) -> bytes:
    if isinstance(m, asw.AudioMessage):
        return asw.encode_frame(m.kind, m.pcm)  # 0x10-0x18: answered in kind
    if isinstance(m, asw.UuidMessage):
        return asw.encode_frame(asw.KIND_UUID, uuid.UUID(m.uuid).bytes)
    if isinstance(m, asw.DtmfMessage):
        return asw.encode_frame(asw.KIND_DTMF, m.raw)
    raise AssertionError(f"unexpected {m!r}")


# --------------------------------------------------------------------------- dialogue YAML

caller_items = st.one_of(
    st.text(max_size=20),
    objects_with({"say": st.text(max_size=20), "barge_in_after_ms": st.integers(-10, 5000)}),
    objects_with({"silence_ms": st.integers(-10, 10_000)}),
    json_values,
)
dialogues = objects_with(
    {
        "caller": st.lists(caller_items, max_size=5),
        "now": st.sampled_from(
            ["2026-11-23T10:00:00+03:00", "2026-11-23T10:00:00", "yesterday", "", "2026-13-45"]
        ),
        "sample_rate": st.sampled_from([8000, 16000, "16k", -1]),
        "setup": json_values,
        "expect": json_values,
        "echo": json_values,
        "name": json_values,
    }
)
yaml_texts = st.one_of(
    dialogues.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.text(max_size=200),
    st.just("caller: [&a [*a]]"),
    st.just("a: !!python/object/apply:os.system ['true']"),
)


@FUZZ
@given(yaml_texts)
def test_dialogue_yaml_loads_or_raises_value_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "dialogue.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            script = load_script(path)
        except ValueError as exc:
            assert str(exc)
            return
    assert script.sample_rate > 0
    for line in script.lines:
        assert line.say is not None or line.silence_ms is not None
        if line.silence_ms is not None:
            assert line.silence_ms >= 0
    _ = Any


@FUZZ
@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40), st.binary(max_size=700))
def test_media_frames_are_formatted_exactly_as_json_would(
    seq: int, chunk: int, ts: int, payload: bytes
) -> None:
    """The outbound media frame skips json.dumps (hot path); it must be the same text."""
    from voicebot.transports.voximplant_wire import MediaOut, encode_outbound

    media = {"chunk": chunk, "timestamp": ts, "payload": base64.b64encode(payload).decode()}
    want = json.dumps(
        {"event": "media", "sequenceNumber": seq, "media": media}, separators=(",", ":")
    )
    assert encode_outbound(MediaOut(seq, chunk, ts, payload)) == want
