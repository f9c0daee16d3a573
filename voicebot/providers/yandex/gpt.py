"""YandexGPT (Foundation Models v1) REST client: `complete()` and a delta `stream()`.

The service streams NDJSON lines with CUMULATIVE text; `stream()` turns them into
deltas. 429 and 5xx are retried with exponential backoff, but only before any text was
yielded (a half-spoken reply cannot be taken back). `options.timeout_s` bounds the whole
call so the dialogue can fall back to its deterministic layer in time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from voicebot.config import GptSettings
from voicebot.providers.base import (
    AuthError,
    ChatMessage,
    Completion,
    GenerationOptions,
    ProviderError,
    RateLimitError,
)
from voicebot.providers.yandex.auth import YandexAuth

log = logging.getLogger(__name__)

COMPLETION_PATH = "/foundationModels/v1/completion"
# TokenizerService/Tokenize (fm_v1 descriptor): {modelUri, text} -> {tokens: [{id, text,
# special}], modelVersion}. Quota: 50 requests/s (docs/yandex-research.md).
TOKENIZE_PATH = "/foundationModels/v1/tokenize"
FINAL_STATUSES = frozenset(
    {
        "ALTERNATIVE_STATUS_FINAL",
        "ALTERNATIVE_STATUS_TRUNCATED_FINAL",
        "ALTERNATIVE_STATUS_CONTENT_FILTER",
        "ALTERNATIVE_STATUS_TOOL_CALLS",
    }
)
_GRPC_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
PROVIDER = "yandexgpt"
_DEFAULT_OPTIONS = GenerationOptions()


def _http_error(status: int, body: bytes) -> ProviderError:
    """The `{"error": {grpcCode, httpCode, message, ...}}` body as a typed error."""
    grpc_code, message = None, ""
    try:
        err = json.loads(body).get("error", {})
        grpc_code = int(err.get("grpcCode")) if err.get("grpcCode") is not None else None
        message = str(err.get("message", ""))
    except (ValueError, AttributeError, TypeError):
        pass
    code = _GRPC_NAMES.get(grpc_code or 0, f"HTTP_{status}")
    text = f"YandexGPT: HTTP {status} {message}".strip()
    if status == 429 or grpc_code == 8:
        return RateLimitError(text, code="RESOURCE_EXHAUSTED", retriable=True, provider=PROVIDER)
    if status in (401, 403) or grpc_code in (16, 7):
        return AuthError(text, code=code if grpc_code else "UNAUTHENTICATED", provider=PROVIDER)
    if status >= 500:
        return ProviderError(text, code=code, retriable=True, provider=PROVIDER)
    return ProviderError(text, code=code, retriable=False, provider=PROVIDER)


def _malformed(what: str) -> ProviderError:
    return ProviderError(f"YandexGPT: {what}", code="MALFORMED", provider=PROVIDER)


def _alternative(frame: Any) -> tuple[str, str, dict[str, Any]]:
    """(text, status, usage) of one `{"result": ...}` object."""
    try:
        result = frame["result"]
        alt = result["alternatives"][0]
        text = alt.get("message", {}).get("text", "")
        status = alt.get("status", "")
        usage = result.get("usage", {}) or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _malformed("unexpected response shape") from None
    if not isinstance(text, str) or not isinstance(status, str):
        raise _malformed("unexpected response shape")
    return text, status, usage


class YandexGPT:
    """`LanguageModel` on the YandexGPT REST API."""

    name = "yandexgpt"

    def __init__(
        self,
        base_url: str,
        auth: YandexAuth,
        *,
        folder_id: str,
        settings: GptSettings | None = None,
        http: httpx.AsyncClient | None = None,
        backoff_s: float = 0.25,
        data_logging: bool = False,
    ) -> None:
        if not folder_id:
            raise ValueError("YandexGPT needs a folder id: it is part of the model URI")
        self._url = base_url.rstrip("/") + COMPLETION_PATH
        self._tokenize_url = base_url.rstrip("/") + TOKENIZE_PATH
        self._auth = auth
        self._folder_id = folder_id
        self._settings = settings or GptSettings()
        self._http = http
        self._own_http = http is None
        self._backoff_s = backoff_s
        self._data_logging = data_logging

    def __repr__(self) -> str:
        return f"YandexGPT(url={self._url!r}, model={self._settings.model!r})"

    @property
    def model_uri(self) -> str:
        """`gpt://<folder>/<model>`."""
        return f"gpt://{self._folder_id}/{self._settings.model}"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        return self._http

    def request_body(
        self, messages: Sequence[ChatMessage], options: GenerationOptions, *, stream: bool
    ) -> dict[str, Any]:
        """The completion request's JSON body for `messages` and `options`."""
        body: dict[str, Any] = {
            "modelUri": self.model_uri,
            "completionOptions": {
                "stream": stream,
                "temperature": options.temperature,
                "maxTokens": str(options.max_tokens),
            },
            "messages": [{"role": m.role, "text": m.text} for m in messages],
        }
        if options.json_schema is not None:
            body["jsonSchema"] = {"schema": options.json_schema}
        body.update(options.extra)
        return body

    async def _headers(self, request_id: str) -> dict[str, str]:
        headers = dict(await self._auth.headers())
        if self._folder_id:
            headers["x-folder-id"] = self._folder_id
        headers["x-client-request-id"] = request_id
        if not self._data_logging:
            headers["x-data-logging-enabled"] = "false"
        return headers

    async def _retry_pause(self, attempt: int, exc: ProviderError, deadline: float) -> None:
        """Exponential backoff that never sleeps past the call's deadline."""
        delay = self._backoff_s * 2**attempt
        loop = asyncio.get_running_loop()
        if loop.time() + delay >= deadline:
            raise _timeout() from exc
        log.info("YandexGPT: %s, retry %d in %.2f s", exc.code, attempt + 1, delay)
        await asyncio.sleep(delay)

    # ------------------------------------------------------------------ complete

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = _DEFAULT_OPTIONS
    ) -> Completion:
        """One whole completion, retried on 429/5xx with backoff up to `max_retries`."""
        deadline = asyncio.get_running_loop().time() + options.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                return await self._complete(messages, options, deadline)
        except TimeoutError:
            raise _timeout() from None

    async def _complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions, deadline: float
    ) -> Completion:
        body = self.request_body(messages, options, stream=False)
        request_id = str(uuid.uuid4())
        attempt, auth_retried = 0, False
        while True:
            try:
                resp = await self._client().post(
                    self._url, json=body, headers=await self._headers(request_id)
                )
                if resp.status_code != 200:
                    raise _http_error(resp.status_code, resp.content)
                try:
                    frame = resp.json()
                except ValueError:
                    raise _malformed("response is not JSON") from None
                text, status, usage = _alternative(frame)
                return Completion(
                    text=text,
                    status=status,
                    input_tokens=int(usage.get("inputTextTokens", 0) or 0),
                    completion_tokens=int(usage.get("completionTokens", 0) or 0),
                )
            except httpx.HTTPError as exc:
                error = _transport_error(exc)
            except AuthError:
                if auth_retried:
                    raise
                auth_retried = True
                await self._auth.invalidate()
                continue
            except ProviderError as exc:
                error = exc
            if not error.retriable or attempt >= self._settings.max_retries:
                raise error
            await self._retry_pause(attempt, error, deadline)
            attempt += 1

    # ------------------------------------------------------------------ stream

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions = _DEFAULT_OPTIONS
    ) -> AsyncIterator[str]:
        """Text deltas. Each await is bounded by the call's deadline; the deadline is
        never held across a `yield`, so a slow consumer is not cancelled by it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.timeout_s
        body = self.request_body(messages, options, stream=True)
        request_id = str(uuid.uuid4())
        attempt, auth_retried = 0, False
        while True:
            yielded = False
            resp: httpx.Response | None = None
            try:
                try:
                    async with asyncio.timeout_at(deadline):
                        headers = await self._headers(request_id)
                        req = self._client().build_request(
                            "POST", self._url, json=body, headers=headers
                        )
                        resp = await self._client().send(req, stream=True)
                        if resp.status_code != 200:
                            raise _http_error(resp.status_code, await resp.aread())
                    lines = resp.aiter_lines()
                    sent = ""
                    while True:
                        try:
                            async with asyncio.timeout_at(deadline):
                                line = await anext(lines)
                        except StopAsyncIteration:
                            raise _malformed("stream ended before a final status") from None
                        if not line.strip():
                            continue
                        try:
                            frame = json.loads(line)
                        except ValueError:
                            raise _malformed("stream line is not JSON") from None
                        if isinstance(frame, dict) and "error" in frame:
                            raise _http_error(
                                int(frame["error"].get("httpCode", 500) or 500), line.encode()
                            )
                        text, status, _ = _alternative(frame)
                        delta = _delta(sent, text)
                        sent = text
                        if delta:
                            yielded = True
                            yield delta
                        if status in FINAL_STATUSES:
                            return
                except TimeoutError:
                    raise _timeout() from None
                except httpx.HTTPError as exc:
                    raise _transport_error(exc) from None
            except AuthError:
                if auth_retried or yielded:
                    raise
                auth_retried = True
                await self._auth.invalidate()
                continue
            except ProviderError as exc:
                if yielded or not exc.retriable or attempt >= self._settings.max_retries:
                    raise
                await self._retry_pause(attempt, exc, deadline)
                attempt += 1
            finally:
                if resp is not None:
                    await resp.aclose()

    # ------------------------------------------------------------------ tokenize

    async def count_tokens(self, text: str, *, timeout_s: float = 2.0) -> int:
        """How many model tokens `text` is, from the service's own tokenizer.

        Raises `ProviderError` (retriable for 429/5xx/transport errors, code TIMEOUT
        past `timeout_s`); callers that only budget a history fall back to an estimate.
        """
        body = {"modelUri": self.model_uri, "text": text}
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._client().post(
                    self._tokenize_url, json=body, headers=await self._headers(str(uuid.uuid4()))
                )
        except TimeoutError:
            raise _timeout() from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if resp.status_code != 200:
            raise _http_error(resp.status_code, resp.content)
        try:
            tokens = resp.json()["tokens"]
        except (ValueError, KeyError, TypeError):
            raise _malformed("tokenize response has no tokens") from None
        if not isinstance(tokens, list):
            raise _malformed("tokenize response has no tokens")
        return len(tokens)

    async def aclose(self) -> None:
        """Close the HTTP client (when this instance made it)."""
        if self._own_http and self._http is not None:
            await self._http.aclose()
        self._http = None


def _delta(sent: str, text: str) -> str:
    if text.startswith(sent):
        return text[len(sent) :]
    # The service rewrote earlier text (should not happen): speak only what is new.
    common = 0
    for a, b in zip(sent, text, strict=False):
        if a != b:
            break
        common += 1
    log.warning("YandexGPT: cumulative text diverged at %d chars", common)
    return text[max(common, len(sent)) :]


def _timeout() -> ProviderError:
    return ProviderError("YandexGPT: call timed out", code="TIMEOUT", provider=PROVIDER)


def _transport_error(exc: httpx.HTTPError) -> ProviderError:
    name = type(exc).__name__
    return ProviderError(
        f"YandexGPT: {name}", code="UNAVAILABLE", retriable=True, provider=PROVIDER
    )
