"""Helpers for engine tests: configs and caller scripts."""

from __future__ import annotations

import dataclasses
from typing import Any

from voicebot.config import Config
from voicebot.simulate import CallerLine, DialogueScript

from .emulator_fixtures import fast_settings


def engine_config(*, emulator: dict[str, Any] | None = None, **engine: Any) -> Config:
    """The echo dialogue on a fast emulator; keyword arguments override engine settings."""
    cfg = Config()
    cfg.dialogue.factory = "voicebot.dialogue:build_echo"
    cfg.emulator = fast_settings(**(emulator or {}))
    for key, value in engine.items():
        if not hasattr(cfg.engine, key):
            raise AttributeError(key)
        if key == "recovery":  # a dict of RecoveryPolicy fields to change
            value = dataclasses.replace(cfg.engine.recovery, **value)
        setattr(cfg.engine, key, value)
    return cfg


def script(*lines: str | dict[str, Any], echo: bool = False, rate: int = 16000) -> DialogueScript:
    parsed = []
    for ln in lines:
        if isinstance(ln, str):
            parsed.append(CallerLine(say=ln))
        elif "say" in ln:
            parsed.append(
                CallerLine(
                    say=ln["say"],
                    barge_in_after_ms=ln.get("barge_in_after_ms"),
                    after_ms=ln.get("after_ms"),
                    then_pause_ms=ln.get("then_pause_ms", 0),
                    say_more=ln.get("say_more"),
                )
            )
        else:
            parsed.append(CallerLine(silence_ms=ln["silence_ms"]))
    return DialogueScript(now=None, lines=parsed, echo=echo, sample_rate=rate)
