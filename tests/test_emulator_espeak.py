"""The emulator's espeak-ng synthesis: in-process library, CLI fallback, shared cache."""

from __future__ import annotations

import asyncio
import subprocess

import numpy as np
import pytest

from voicebot.emulator.espeak import EspeakSynthesizer, espeak_library

pytestmark = pytest.mark.skipif(not EspeakSynthesizer.available(), reason="espeak-ng missing")

TEXT = "Записываю вас на стрижку к мастеру Анне завтра, в десять утра."


def voiced_s(pcm: bytes, rate: int) -> float:
    """Seconds of 20 ms frames above -40 dBFS."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = rate // 50
    frames = x[: len(x) // n * n].reshape(-1, n)
    return float((np.sqrt((frames**2).mean(axis=1)) > 328).sum()) / 50


@pytest.mark.skipif(espeak_library() is None, reason="libespeak-ng not loadable")
async def test_a_cache_miss_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a burst of unique phrases a process per phrase (and the Russian dictionary
    reloaded each time) cost ~13 ms of CPU each: the bench's read-back turn queued."""

    def no_process(*a: object, **k: object) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_process)
    monkeypatch.setattr(subprocess, "run", no_process)
    synth = EspeakSynthesizer()
    pcm = await synth.synthesize(TEXT, sample_rate=16000)
    assert synth.subprocess_runs == 1
    assert 2.0 < voiced_s(pcm, 16000) < 6.0


async def test_library_and_cli_speak_alike() -> None:
    cli = EspeakSynthesizer(use_library=False)
    a = await cli.synthesize(TEXT, sample_rate=8000)
    b = await EspeakSynthesizer().synthesize(TEXT, sample_rate=8000)
    assert voiced_s(a, 8000) == pytest.approx(voiced_s(b, 8000), rel=0.1)
    assert cli.subprocess_runs == 1


async def test_concurrent_misses_for_one_phrase_run_espeak_once() -> None:
    synth = EspeakSynthesizer()
    texts = [f"Имя Ольга, телефон восемь девятьсот {i}." for i in range(6)]
    outs = await asyncio.gather(*(synth.synthesize(t, sample_rate=16000) for t in texts * 3))
    assert synth.subprocess_runs == len(texts)
    assert outs[: len(texts)] == outs[len(texts) : 2 * len(texts)]
    # Cached at the native rate too: another rate costs no new run.
    await synth.synthesize(texts[0], sample_rate=8000)
    assert synth.subprocess_runs == len(texts)
