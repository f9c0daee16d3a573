"""JSON logs: one object per line, and the call id and turn id on lines written
inside a call (context variables inherited by the call's and the turn's tasks)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from voicebot.ops import logs


def capture(fmt: logging.Formatter) -> tuple[logging.Handler, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(fmt)
    return handler, buf


async def test_json_lines_carry_call_and_turn_ids_into_child_tasks() -> None:
    handler, buf = capture(logs.JsonFormatter())
    log = logging.getLogger("voicebot.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:

        async def turn() -> None:
            logs.bind_turn("t2")
            await asyncio.get_running_loop().create_task(speak())

        async def speak() -> None:
            log.info("speaking to +7 (***) ***-**-67")

        async def call() -> None:
            logs.bind_call("abc123")
            log.info("call started")
            await asyncio.get_running_loop().create_task(turn())
            log.info("call over")

        await asyncio.get_running_loop().create_task(call())
        log.info("outside")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [(x["msg"][:8], x["call_id"], x["turn_id"]) for x in lines[:4]] == [
        ("call sta", "abc123", None),
        ("speaking", "abc123", "t2"),
        ("call ove", "abc123", None),  # the turn's id stayed in the turn's task
        ("outside", None, None),
    ]
    assert {"ts", "level", "logger", "pid"} <= set(lines[0])
    assert lines[-1]["level"] == "ERROR" and "RuntimeError: boom" in lines[-1]["exc"]


def test_text_format_shows_ids_and_bad_formats_are_refused() -> None:
    handler, buf = capture(logging.Formatter(logs.TEXT_FORMAT))
    log = logging.getLogger("voicebot.test_logs_text")
    log.addHandler(handler)
    try:
        ctx = __import__("contextvars").copy_context()
        ctx.run(lambda: (logs.bind_call("c1"), logs.bind_turn("t1"), log.warning("hi")))
    finally:
        log.removeHandler(handler)
    assert "WARNING [c1/t1] voicebot.test_logs_text: hi" in buf.getvalue()
    with pytest.raises(ValueError):
        logs.configure("xml")
