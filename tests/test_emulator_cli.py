"""`voicebot emulator` as a separate process, driven ONLY through the public wire
protocols (yandexcloud stubs, grpc, httpx, PyJWT): what a developer or another
language's client would see. No project imports on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc
from yandex.cloud.ai.tts.v3 import tts_pb2, tts_service_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
API_KEY = "AQVN-cli-test-key-do-not-print"
AUDIENCE = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
STT_RATE = 16000


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.asynccontextmanager
async def emulator_process(tmp_path: Path) -> AsyncIterator[tuple[dict, list[str], Path]]:
    stt_port, tts_port, http_port = free_ports(3)
    key_file = tmp_path / "sa-key.json"
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebot.cli",
            "emulator",
            "--host=127.0.0.1",
            f"--stt-port={stt_port}",
            f"--tts-port={tts_port}",
            f"--http-port={http_port}",
            f"--api-key={API_KEY}",
            f"--write-sa-key={key_file}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(30):
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        pytest.fail(f"emulator exited early: {stderr_path.read_text()}")
                    lines.append(raw.decode())
                    if raw.startswith(b"EMULATOR_READY "):
                        break
            ready = json.loads(lines[-1].removeprefix("EMULATOR_READY "))
            assert ready["stt"] == f"127.0.0.1:{stt_port}"
            assert ready["tts"] == f"127.0.0.1:{tts_port}"
            assert ready["http"] == f"http://127.0.0.1:{http_port}"
            yield ready, lines, key_file
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 15)
            lines.append((await proc.stdout.read()).decode())
    assert rc == 0, stderr_path.read_text()
    logs = stderr_path.read_text() + "".join(lines)
    assert API_KEY not in logs, "the API key must never be printed"
    assert "PRIVATE KEY" not in logs


def tts_request(text: str) -> tts_pb2.UtteranceSynthesisRequest:
    return tts_pb2.UtteranceSynthesisRequest(
        text=text,
        hints=[tts_pb2.Hints(voice="alena"), tts_pb2.Hints(role="good")],
        output_audio_spec=tts_pb2.AudioFormatOptions(
            raw_audio=tts_pb2.RawAudio(
                audio_encoding=tts_pb2.RawAudio.LINEAR16_PCM, sample_rate_hertz=STT_RATE
            )
        ),
    )


async def synthesize(endpoint: str, text: str, authorization: str) -> bytes:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = tts_service_pb2_grpc.SynthesizerStub(channel)
        call = stub.UtteranceSynthesis(
            tts_request(text), metadata=[("authorization", authorization)]
        )
        return b"".join([r.audio_chunk.data async for r in call])


async def recognize_real_time(endpoint: str, pcm: bytes, utterance: str) -> list[str]:
    """Feed speech + trailing silence in 100 ms chunks at real-time pace."""
    options = stt_pb2.StreamingOptions(
        recognition_model=stt_pb2.RecognitionModelOptions(
            audio_format=stt_pb2.AudioFormatOptions(
                raw_audio=stt_pb2.RawAudio(
                    audio_encoding=stt_pb2.RawAudio.LINEAR16_PCM,
                    sample_rate_hertz=STT_RATE,
                    audio_channel_count=1,
                )
            ),
            text_normalization=stt_pb2.TextNormalizationOptions(
                text_normalization=stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
            ),
            audio_processing_type=stt_pb2.RecognitionModelOptions.REAL_TIME,
        ),
        eou_classifier=stt_pb2.EouClassifierOptions(
            default_classifier=stt_pb2.DefaultEouClassifier(max_pause_between_words_hint_ms=500)
        ),
    )
    audio = pcm + bytes(STT_RATE * 2)  # 1 s of silence after the phrase
    step = STT_RATE * 2 // 10

    async def requests() -> AsyncIterator[stt_pb2.StreamingRequest]:
        yield stt_pb2.StreamingRequest(session_options=options)
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(audio), step)):
            await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
            yield stt_pb2.StreamingRequest(
                chunk=stt_pb2.AudioChunk(data=audio[offset : offset + step])
            )

    metadata = [
        ("authorization", f"Api-Key {API_KEY}"),
        ("x-emulator-utterances-bin", json.dumps([utterance]).encode()),
    ]
    events: list[str] = []
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = stt_service_pb2_grpc.RecognizerStub(channel)
        async for resp in stub.RecognizeStreaming(requests(), metadata=metadata):
            kind = resp.WhichOneof("Event")
            if kind == "final" and resp.final.alternatives:
                events.append(f"final:{resp.final.alternatives[0].text}")
            elif kind == "final_refinement":
                alts = resp.final_refinement.normalized_text.alternatives
                events.append(f"final_refinement:{alts[0].text if alts else ''}")
            else:
                events.append(kind)
    return events


async def test_emulator_cli_end_to_end(tmp_path: Path) -> None:
    async with emulator_process(tmp_path) as (ready, lines, key_file):
        banner = "".join(lines)
        assert "TEST DOUBLE" in banner
        # The SA key: written privately, in the `yc iam key create` format.
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        key = json.loads(key_file.read_text())
        assert key["key_algorithm"] == "RSA_2048"
        assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")

        async with httpx.AsyncClient(base_url=ready["http"]) as http:
            # JWT → IAM token.
            now = int(time.time())
            signed = jwt.encode(
                {"iss": key["service_account_id"], "aud": AUDIENCE, "iat": now, "exp": now + 3600},
                key["private_key"],
                algorithm="PS256",
                headers={"kid": key["id"]},
            )
            r = await http.post("/iam/v1/tokens", json={"jwt": signed})
            assert r.status_code == 200, r.text
            bearer = f"Bearer {r.json()['iamToken']}"

            # Completion with the IAM token, and refused with a wrong key.
            body = {
                "modelUri": "gpt://b1gfolder/yandexgpt-lite/latest",
                "completionOptions": {"stream": False, "temperature": 0.3, "maxTokens": "100"},
                "messages": [{"role": "user", "text": "Запишите меня на стрижку"}],
            }
            r = await http.post(
                "/foundationModels/v1/completion", json=body, headers={"Authorization": bearer}
            )
            assert r.status_code == 200, r.text
            alt = r.json()["result"]["alternatives"][0]
            assert alt["message"]["text"] == "Эхо: Запишите меня на стрижку"
            assert alt["status"] == "ALTERNATIVE_STATUS_FINAL"
            r = await http.post(
                "/foundationModels/v1/completion",
                json=body,
                headers={"Authorization": "Api-Key wrong"},
            )
            assert r.status_code == 401 and r.json()["error"]["grpcCode"] == 16
            health = (await http.get("/emulator/healthz")).json()

        # Speech with the API key (and the IAM token).
        phrase = "Здравствуйте, я хочу записаться на стрижку."
        pcm = await synthesize(ready["tts"], phrase, f"Api-Key {API_KEY}")
        assert len(pcm) / 2 / STT_RATE > 1.0
        assert await synthesize(ready["tts"], "Да", bearer)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await synthesize(ready["tts"], "Да", "Api-Key wrong")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # STT is served whenever its module exists (checked without importing it).
        assert health["stt"] == (importlib.util.find_spec("voicebot.emulator.stt") is not None)
        if health["stt"]:
            events = await recognize_real_time(ready["stt"], pcm, "Хочу записаться на 15:30")
            assert "partial" in events
            finals = [e for e in events if e.startswith("final:")]
            assert finals and finals[0] != "final:"
            assert "final_refinement:Хочу записаться на 15:30" in events
            assert "eou_update" in events
            order = [events.index(finals[0]), events.index("eou_update")]
            assert order == sorted(order), "final before end of utterance"
