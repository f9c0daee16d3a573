"""Optional POST of each new booking to a URL from config, in the background: the reply
never waits for it, and failures are logged, not raised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx

log = logging.getLogger(__name__)


class Webhook:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, payload: Mapping[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(dict(payload)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, payload: dict[str, Any]) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                resp = await client.post(self.url, json=payload)
                resp.raise_for_status()
        except Exception as e:  # never break a call over a webhook
            log.warning("booking webhook failed: %s", type(e).__name__)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for in-flight posts, e.g. at shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
