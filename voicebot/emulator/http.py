"""The emulator's HTTP side (a test double): YandexGPT completion, IAM and admin routes.

`POST /foundationModels/v1/completion` answers with the real JSON shapes (the
`{"result": ...}` wrapper, int64 usage as strings, cumulative NDJSON when streaming,
the `{"error": {...}}` body) at a configurable pace. Replies are deterministic (a
script, else an echo) and faults can be queued, so client retry/timeout paths are
testable. Admin routes under `/emulator/` let a separate process drive it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from voicebot.config import EmulatorSettings
from voicebot.emulator.auth import EmulatorAuth
from voicebot.emulator.iam import IamEmulator

log = logging.getLogger(__name__)

COMPLETION_PATH = "/foundationModels/v1/completion"
TOKENIZE_PATH = "/foundationModels/v1/tokenize"
MODEL_VERSION = "23.10.2025"
FAULTS = ("429", "500", "hang", "malformed")
_MODEL_URI = re.compile(r"^gpt://[A-Za-z0-9_-]+/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)?$")
_ROLES = ("system", "user", "assistant")
_HTTP_STATUS = {
    400: "Bad Request",
    401: "Unauthorized",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class _ScriptableStt(Protocol):
    def set_script(self, utterances: list[str]) -> None: ...


class _Injectable(Protocol):
    def inject(self, *faults: str) -> None: ...


@dataclass(frozen=True, slots=True)
class GptRequest:
    """One completion request as received (tests count retries and inspect bodies)."""

    body: Any
    stream: bool
    folder_id: str | None
    client_request_id: str | None
    outcome: str  # "OK", "UNAUTHENTICATED", "INVALID_ARGUMENT" or the injected fault


class _BadRequest(Exception):
    pass


def _field(d: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    """proto3 JSON accepts both the lowerCamelCase and the original field name."""
    if camel in d:
        return d[camel]
    return d.get(snake, default)


def _tokens(text: str) -> list[str]:
    """Word-ish "tokens" whose concatenation is exactly `text`."""
    return re.findall(r"\S+\s*|\s+", text)


def _error_body(http: int, grpc_code: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "grpcCode": grpc_code,
            "httpCode": http,
            "message": message,
            "httpStatus": _HTTP_STATUS.get(http, ""),
            "details": [],
        }
    }


def _error(http: int, grpc_code: int, message: str) -> web.Response:
    return web.json_response(_error_body(http, grpc_code, message), status=http)


@dataclass(frozen=True, slots=True)
class _Parsed:
    stream: bool
    messages: list[dict[str, Any]]
    max_tokens: int | None
    wants_json: bool


def _parse(body: Any) -> _Parsed:
    if not isinstance(body, dict):
        raise _BadRequest("Request body must be a JSON object")
    uri = _field(body, "modelUri", "model_uri")
    if not isinstance(uri, str) or not _MODEL_URI.match(uri):
        raise _BadRequest(f"Invalid modelUri {uri!r}: expected gpt://<folder>/<model>[/<version>]")
    opts = _field(body, "completionOptions", "completion_options", {}) or {}
    if not isinstance(opts, dict):
        raise _BadRequest("completionOptions must be an object")
    stream = opts.get("stream", False)
    if not isinstance(stream, bool):
        raise _BadRequest("completionOptions.stream must be a boolean")
    temperature = opts.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 1
    ):
        raise _BadRequest("completionOptions.temperature must be a number in [0, 1]")
    max_tokens = _field(opts, "maxTokens", "max_tokens")
    if max_tokens is not None:
        try:
            max_tokens = int(max_tokens)
        except (TypeError, ValueError):
            raise _BadRequest("completionOptions.maxTokens must be an integer") from None
        if max_tokens <= 0:
            raise _BadRequest("completionOptions.maxTokens must be greater than zero")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise _BadRequest(f"messages[{i}].role must be one of {', '.join(_ROLES)}")
        has_text = isinstance(m.get("text"), str)
        has_tools = any(
            k in m for k in ("toolCallList", "tool_call_list", "toolResultList", "tool_result_list")
        )
        if not has_text and not has_tools:
            raise _BadRequest(f"messages[{i}] has no content")
    json_object = _field(body, "jsonObject", "json_object", False)
    json_schema = _field(body, "jsonSchema", "json_schema")
    if json_object and json_schema is not None:
        raise _BadRequest("jsonObject and jsonSchema are mutually exclusive")
    if json_schema is not None and (
        not isinstance(json_schema, dict) or not isinstance(json_schema.get("schema"), dict)
    ):
        raise _BadRequest("jsonSchema must be {schema: {...}}")
    return _Parsed(stream, messages, max_tokens, bool(json_object) or json_schema is not None)


class GptEmulator:
    """Completion endpoint state: scripted replies, queued faults and a request log."""

    def __init__(self, settings: EmulatorSettings, auth: EmulatorAuth) -> None:
        self._settings = settings
        self._auth = auth
        self._script: deque[str] = deque()
        self._faults: deque[str] = deque()
        self.requests: deque[GptRequest] = deque(maxlen=10_000)  # bounded for long benches
        self._closing = asyncio.Event()
        self.tokenize_requests = 0

    def script(self, replies: list[str]) -> None:
        """Queue replies; each request takes the next one (FIFO) instead of the echo."""
        self._script.extend(str(r) for r in replies)

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests: "429", "500", "hang" or "malformed"."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown GPT fault {fault!r}; expected one of {FAULTS}")
        self._faults.extend(faults)

    def reset(self) -> None:
        """Forget scripted replies, faults and recorded requests."""
        self._script.clear()
        self._faults.clear()
        self.requests.clear()

    def close(self) -> None:
        """Release hanging requests so the server can stop."""
        self._closing.set()

    def _reply(self, parsed: _Parsed) -> str:
        if self._script:
            return self._script.popleft()
        if parsed.wants_json:
            return "{}"
        for m in reversed(parsed.messages):
            if m.get("role") == "user" and isinstance(m.get("text"), str):
                return f"Эхо: {m['text']}"
        return "Эхо: "

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`POST /foundationModels/v1/completion`: scripted, echo or JSON answers, streamed
        or not; faults."""
        headers = request.headers
        meta = (headers.get("x-folder-id"), headers.get("x-client-request-id"))
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        stream = bool(
            isinstance(body, dict)
            and isinstance(_field(body, "completionOptions", "completion_options"), dict)
            and _field(body, "completionOptions", "completion_options").get("stream") is True
        )

        def record(outcome: str) -> None:
            self.requests.append(GptRequest(body, stream, meta[0], meta[1], outcome))

        if not self._auth.check(headers.get("authorization")):
            record("UNAUTHENTICATED")
            return _error(401, 16, "Unknown api key or IAM token")
        if body is None:
            record("INVALID_ARGUMENT")
            return _error(400, 3, "Request body is not valid JSON")
        try:
            parsed = _parse(body)
        except _BadRequest as exc:
            record("INVALID_ARGUMENT")
            return _error(400, 3, str(exc))

        fault = self._faults.popleft() if self._faults else None
        record(fault or "OK")
        if fault == "429":
            return _error(
                429,
                8,
                "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: "
                "allowed 10 requests",
            )
        if fault == "500":
            return _error(500, 13, "Internal error")
        if fault == "hang":
            await self._hang(request)
            return web.Response(status=503)

        text = self._reply(parsed)
        tokens = _tokens(text)
        status = "ALTERNATIVE_STATUS_FINAL"
        if parsed.max_tokens is not None and len(tokens) > parsed.max_tokens:
            tokens = tokens[: parsed.max_tokens]
            status = "ALTERNATIVE_STATUS_TRUNCATED_FINAL"
        input_tokens = sum(len(_tokens(str(m.get("text", "")))) for m in parsed.messages)
        if parsed.stream:
            return await self._stream(request, tokens, status, input_tokens, fault == "malformed")
        await asyncio.sleep(self._generation_time(len(tokens)))
        payload = self._result("".join(tokens), status, input_tokens, len(tokens))
        if fault == "malformed":
            return web.Response(
                body=json.dumps(payload).encode()[:40], content_type="application/json"
            )
        return web.json_response(payload)

    async def tokenize(self, request: web.Request) -> web.Response:
        """`TokenizerService/Tokenize`: `{modelUri, text}` -> `{tokens: [{id, text,
        special}], modelVersion}`, int64 ids as JSON strings (proto3 JSON). The split is
        the emulator's own word-ish one, not the real model's vocabulary."""
        if not self._auth.check(request.headers.get("authorization")):
            return _error(401, 16, "Unknown api key or IAM token")
        try:
            body: Any = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _error(400, 3, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, 3, "Request body must be a JSON object")
        uri = _field(body, "modelUri", "model_uri")
        if not isinstance(uri, str) or not _MODEL_URI.match(uri):
            return _error(400, 3, f"Invalid modelUri {uri!r}")
        text = body.get("text", "")
        if not isinstance(text, str):
            return _error(400, 3, "text must be a string")
        self.tokenize_requests += 1
        tokens = [
            {"id": str(zlib.crc32(t.encode()) % 100_000), "text": t, "special": False}
            for t in _tokens(text)
        ]
        return web.json_response({"tokens": tokens, "modelVersion": MODEL_VERSION})

    def _generation_time(self, n_tokens: int) -> float:
        per_token = 1.0 / self._settings.gpt_tokens_per_s if self._settings.gpt_tokens_per_s else 0
        return self._settings.gpt_ttft_ms / 1000 + max(0, n_tokens - 1) * per_token

    @staticmethod
    def _result(text: str, status: str, input_tokens: int, completion_tokens: int) -> dict:
        return {
            "result": {
                "alternatives": [
                    {"message": {"role": "assistant", "text": text}, "status": status}
                ],
                "usage": {
                    "inputTextTokens": str(input_tokens),
                    "completionTokens": str(completion_tokens),
                    "totalTokens": str(input_tokens + completion_tokens),
                    "completionTokensDetails": {"reasoningTokens": "0"},
                },
                "modelVersion": MODEL_VERSION,
            }
        }

    async def _stream(
        self,
        request: web.Request,
        tokens: list[str],
        final_status: str,
        input_tokens: int,
        malformed: bool,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        per_token = 1.0 / self._settings.gpt_tokens_per_s if self._settings.gpt_tokens_per_s else 0
        n = max(1, len(tokens))
        try:
            for i in range(1, n + 1):
                due = start + self._settings.gpt_ttft_ms / 1000 + (i - 1) * per_token
                await asyncio.sleep(max(0.0, due - loop.time()))
                status = final_status if i == n else "ALTERNATIVE_STATUS_PARTIAL"
                line = json.dumps(
                    self._result("".join(tokens[:i]), status, input_tokens, i), ensure_ascii=False
                )
                if malformed and (i == n or i >= 2):
                    await resp.write(line.encode()[: len(line) // 2])  # truncated, no newline
                    break
                await resp.write(line.encode() + b"\n")
            await resp.write_eof()
        except ConnectionResetError:
            log.debug("emulator GPT: client went away mid-stream")
        return resp

    async def _hang(self, request: web.Request) -> None:
        """Answer nothing until the client disconnects or the emulator stops."""
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            try:
                await asyncio.wait_for(self._closing.wait(), 0.05)
            except TimeoutError:
                pass


def build_app(
    gpt: GptEmulator,
    iam: IamEmulator,
    stt: _ScriptableStt | None = None,
    tts: _Injectable | None = None,
) -> web.Application:
    """GPT + IAM + admin routes on one aiohttp application.

    Fault injection from another process (`voicebot bench --soak --faults`):
    `POST /emulator/gpt/faults {"faults": ["429", "500", "hang", "malformed"]}`,
    `POST /emulator/tts/faults {"faults": ["UNAVAILABLE", "hang", ...]}` (gRPC status
    names) and `POST /emulator/stt/drop` (every open recognition stream fails on its
    next message, as when a balancer resets the connection).
    """

    async def gpt_script(request: web.Request) -> web.Response:
        body = await _json_object(request)
        replies = body.get("replies")
        if not isinstance(replies, list):
            return web.json_response({"error": "expected {replies: [...]}"}, status=400)
        gpt.script([str(r) for r in replies])
        return web.json_response({"ok": True, "queued": len(replies)})

    async def gpt_faults(request: web.Request) -> web.Response:
        body = await _json_object(request)
        faults = body.get("faults")
        if not isinstance(faults, list):
            return web.json_response({"error": "expected {faults: [...]}"}, status=400)
        try:
            gpt.inject(*[str(f) for f in faults])
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True, "queued": len(faults)})

    async def stt_script(request: web.Request) -> web.Response:
        body = await _json_object(request)
        utterances = body.get("utterances")
        if not isinstance(utterances, list):
            return web.json_response({"error": "expected {utterances: [...]}"}, status=400)
        if stt is None:
            return web.json_response({"error": "STT is not available"}, status=503)
        stt.set_script([str(u) for u in utterances])
        return web.json_response({"ok": True, "utterances": len(utterances)})

    async def tts_faults(request: web.Request) -> web.Response:
        body = await _json_object(request)
        faults = body.get("faults")
        if not isinstance(faults, list):
            return web.json_response({"error": "expected {faults: [...]}"}, status=400)
        if tts is None:
            return web.json_response({"error": "TTS is not available"}, status=503)
        try:
            tts.inject(*[str(f) for f in faults])
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True, "queued": len(faults)})

    async def stt_drop(request: web.Request) -> web.Response:
        drop = getattr(stt, "drop_streams", None)
        if drop is None:
            return web.json_response({"error": "this STT cannot drop streams"}, status=503)
        return web.json_response({"ok": True, "dropped": drop()})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "emulator": True, "stt": stt is not None})

    app = web.Application()
    app.router.add_post(COMPLETION_PATH, gpt.handle)
    app.router.add_post(TOKENIZE_PATH, gpt.tokenize)
    app.router.add_post("/iam/v1/tokens", iam.handle_create)
    app.router.add_post("/iam/v1/tokens:revoke", iam.handle_revoke)
    app.router.add_post("/emulator/gpt/script", gpt_script)
    app.router.add_post("/emulator/gpt/faults", gpt_faults)
    app.router.add_post("/emulator/stt/script", stt_script)
    app.router.add_post("/emulator/stt/drop", stt_drop)
    app.router.add_post("/emulator/tts/faults", tts_faults)
    app.router.add_get("/emulator/healthz", healthz)
    return app


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
