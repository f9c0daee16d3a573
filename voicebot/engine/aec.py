"""Acoustic echo cancellation of caller audio, with the audio we play as the reference.

The server knows exactly what the caller's loudspeaker or handset is playing: the bot
audio it queued. `EchoCanceller` feeds that audio, in step with the microphone, as the
far-end (reverse) stream of WebRTC's audio processing module (AEC3, through the
`livekit` binding, which ships prebuilt wheels), and removes its echo from the caller's
audio before recognition. AEC3 estimates the echo path's delay itself (network and
device buffers), so lock-step is enough: each 10 ms of caller audio consumes 10 ms of
queued bot audio, as the far end plays it in real time.

Costs about 80 µs of CPU per 10 ms of audio, so it runs only while bot audio is queued
and for `HOLD_MS` after (the echo tail); otherwise the caller's audio passes untouched.
Measured on synthetic speech with a 30 ms echo path: ~38-40 dB echo removed (ERLE) at
0 dB and -20 dB echo level (tests/test_engine_aec.py prints it).

No echo to cancel is a case of its own. AEC3 that never sees an echo never converges and
keeps its conservative suppressor, which takes ~35 dB off a caller who talks over the
bot (measured): barge-in would die on exactly the lines that need no canceller, such as
a phone line whose echo the network already cancelled. So the canceller watches the
blocks where the bot is loud: when the microphone stays > 35 dB below the bot in 80% of
500 ms of them, the line is echo-free and the caller's audio passes as it came, without
running AEC3 (most of the canceller's cost), and the AEC3 instance is freed then
rather than at the call's end (issue 17: modules held for whole calls left their
memory stranded in the malloc heap). The verdict is sticky — a caller talking
over the bot also makes the microphone loud — and only 3 s of bot audio with the
microphone mostly loud (< 20% quiet) bring the canceller back: a fresh AEC3 instance,
warming up again.

After AEC3, a non-linear processor (as in ITU-T G.168) silences blocks whose echo the canceller mostly removed and whose rest is far below the bot's level:
the residual that AEC3 leaves while it converges (the first second of a call) would
otherwise reach the recognizer as a syllable of the bot's voice. For the first 3 s of
loud bot audio on a line with echo — before AEC3 has found the echo path — it also
silences blocks not 3 dB louder than the bot itself (LiveKit's agents ignore interruptions
for an `aec_warmup_duration` of 3 s for the same reason); a caller talking over the
greeting's first words louder than the echo still gets through.

APM takes 10 ms frames of 8/16/32/48 kHz mono int16. Other rates, or a missing binding,
leave the canceller disabled (`available` False, logged once).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from voicebot.audio import rms

log = logging.getLogger(__name__)

APM_RATES = (8000, 16000, 32000, 48000)
HOLD_MS = 1000  # keep cancelling this long after the last bot audio was consumed
REF_LOUD_DBFS = -35.0  # reference blocks this loud are the evidence
ECHO_FREE_ERL_DB = 35.0  # a microphone this far below the reference carries no echo
EVIDENCE_BLOCKS = 50  # 500 ms of loud reference with the microphone quiet ...
EVIDENCE_QUIET = 0.8  # ... in at least 80% of its blocks (echo lags: onsets look quiet)
RECHECK_BLOCKS = 300  # ... and once it is, only 3 s of mostly loud microphone undo it
RECHECK_QUIET = 0.2
NLP_REMOVED = 10.0  # the canceller removed >= 10 dB of the block ...
NLP_BELOW_REF = 10 ** (15 / 10)  # ... and the rest is >= 15 dB below the reference
WARMUP_BLOCKS = 300  # the first 3 s of loud bot audio, while AEC3 converges
WARMUP_ABOVE_REF = 2.0  # ... silence what is not 3 dB louder than the bot

try:  # the binding is a hard dependency, but a broken wheel must not kill calls
    from livekit import rtc as _rtc
except Exception as e:  # pragma: no cover - depends on the platform's wheel
    _rtc = None
    _IMPORT_ERROR: Exception | None = e
else:
    _IMPORT_ERROR = None

_warned = False


def _new_apm() -> Any:
    assert _rtc is not None
    return _rtc.AudioProcessingModule(
        echo_cancellation=True,
        noise_suppression=False,
        high_pass_filter=True,
        auto_gain_control=False,
    )


class EchoCanceller:
    """Per-call AEC. `far_end(pcm)` when bot audio is queued, `clear()` when it is
    dropped, `process(pcm) -> pcm` for every chunk of caller audio (same length out,
    delayed by less than one 10 ms block)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._block = sample_rate // 100 * 2  # bytes in 10 ms
        self._apm: Any = None  # dropped while the line is echo-free (see _update_echo_free)
        self._on = False  # a supported rate and the binding loaded
        self._ref: deque[bytes] = deque()
        self._ref_bytes = 0
        self._ref_pos = 0  # bytes of _ref[0] already consumed
        self._mic_carry = b""
        self._out_carry = b""
        self._idle_blocks = 0
        self._hold_blocks = HOLD_MS // 10
        self.blocks_processed = 0
        self.residual_blocks = 0  # blocks the non-linear processor silenced
        self._loud_blocks = 0  # loud reference blocks seen (the warm-up count)
        self._quiet = _QuietWindow()  # was the mic quiet while the bot was loud?
        self._echo_free = False
        samples = max(1, self._block // 2)
        self._ref_loud = samples * _ms_of(REF_LOUD_DBFS)
        self._erl = 10 ** (ECHO_FREE_ERL_DB / 10)
        if sample_rate not in APM_RATES:
            log.info("echo canceller off: %d Hz is not an APM rate", sample_rate)
            return
        if _rtc is None:
            _warn_unavailable()
            return
        self._apm = _new_apm()
        self._on = True

    @property
    def available(self) -> bool:
        """True when the WebRTC audio processing module could be loaded."""
        return self._on

    @property
    def engaged(self) -> bool:
        """Bot audio is pending or was heard recently: caller audio is being cleaned."""
        return self._on and (self._ref_bytes > 0 or self._idle_blocks < self._hold_blocks)

    @property
    def echo_free(self) -> bool:
        """The microphone stayed quiet while the bot was loud: nothing to cancel.

        Sticky: a caller talking over the bot also makes the microphone loud, so it takes
        3 s of bot audio with the microphone mostly loud to decide there is echo after
        all."""
        return self._echo_free

    def far_end(self, pcm: bytes) -> None:
        """Bot audio handed to the transport (LINEAR16 at `sample_rate`)."""
        if not self._on or not pcm:
            return
        self._ref.append(pcm if type(pcm) is bytes else bytes(pcm))  # ours to keep
        self._ref_bytes += len(pcm)
        self._idle_blocks = 0

    def clear(self) -> None:
        """The queued bot audio was dropped (barge-in, a replaced answer)."""
        self._ref.clear()
        self._ref_bytes = 0
        self._ref_pos = 0

    def process(self, pcm: bytes) -> bytes:
        """Caller audio in, echo-cancelled caller audio out (same length)."""
        if not self._on:
            return pcm
        carry = self._mic_carry or self._out_carry
        if not carry and not self.engaged:
            return pcm
        if self._echo_free and not carry and not len(pcm) % self._block:
            return self._watch(pcm)
        data = self._mic_carry + pcm
        n = len(data) // self._block * self._block
        self._mic_carry = data[n:]
        out = bytearray(self._out_carry)
        for i in range(0, n, self._block):
            out += self._block_out(data[i : i + self._block])
        # Same length out as in: the carried remainder is paid back by the next call.
        self._out_carry = bytes(out[len(pcm) :])
        res = bytes(out[: len(pcm)])
        return res.ljust(len(pcm), b"\0") if len(res) < len(pcm) else res

    def _watch(self, pcm: bytes) -> bytes:
        """`process` on an echo-free line (whole blocks, nothing carried): the audio passes
        as it came and only the evidence check runs, once for the whole frame, its verdict
        counting for each of its blocks (this is every caller frame while the bot talks).
        If the verdict brings echo back, AEC3 starts with the next frame."""
        blocks = len(pcm) // self._block
        with_ref = min(blocks, -(-self._ref_bytes // self._block))  # blocks the ref reaches
        self._idle_blocks += blocks - with_ref
        if not with_ref:
            return pcm
        self._evidence(self._take_ref(len(pcm)), pcm, blocks)
        return pcm

    def _evidence(self, ref: bytes, mic: bytes, blocks: int = 1) -> tuple[float, float]:
        """Where the reference (`blocks` blocks of it) is loud, whether the microphone
        stayed quiet under it goes into the echo-free verdict. Returns the energies
        (sums of squares; the microphone's -1.0 when the reference was not loud)."""
        samples = len(ref) // 2
        ref_energy = _energy(ref, samples)
        mic_energy = -1.0
        if ref_energy > self._ref_loud * blocks:
            mic_energy = _energy(mic, samples)
            self._quiet.add(mic_energy * self._erl < ref_energy, blocks)
            self._update_echo_free()
        return ref_energy, mic_energy

    def _block_out(self, mic: bytes) -> bytes:
        ref = self._take_ref()
        if ref is None:
            self._idle_blocks += 1
            if self._idle_blocks >= self._hold_blocks:
                return mic
            ref = bytes(self._block)
        samples = self._block // 2
        rate = self.sample_rate
        ref_energy, mic_energy = self._evidence(ref, mic)
        if self._echo_free:
            # Nothing to cancel, and AEC3 is most of a call's CPU (~80 µs per 10 ms): on an
            # echo-free line (any phone line whose network cancels echo) only the energy
            # check above runs. If echo turns up, AEC3 starts over with its warm-up.
            return mic
        self._apm.process_reverse_stream(_rtc.AudioFrame(ref, rate, 1, samples))
        frame = _rtc.AudioFrame(mic, rate, 1, samples)
        self._apm.process_stream(frame)
        self.blocks_processed += 1
        out = bytes(frame.data)
        if mic_energy > 0:
            out_energy = _energy(out, samples)
            # G.168's non-linear processor: the canceller took most of this block (it
            # was echo) and what is left is far below the bot's level: residual echo.
            # A caller talking over the bot keeps the block (little is removed).
            warming = self._loud_blocks < WARMUP_BLOCKS
            if warming:
                self._loud_blocks += 1
            if (warming and out_energy < WARMUP_ABOVE_REF * ref_energy) or (
                out_energy * NLP_REMOVED < mic_energy and out_energy * NLP_BELOW_REF < ref_energy
            ):
                self.residual_blocks += 1
                return bytes(len(out))
        return out

    def _update_echo_free(self) -> None:
        q = self._quiet
        if not self._echo_free:
            self._echo_free = q.seen >= EVIDENCE_BLOCKS and q.fraction_recent() >= EVIDENCE_QUIET
            if self._echo_free:
                # AEC3 will not run on this line: free its ~1.2 MB now, not at the call's
                # end. Held for the whole call, in among other calls' allocations, the
                # modules' freed pieces stayed stranded in the malloc heap (issue 17 soak).
                self._apm = None
        elif q.seen >= RECHECK_BLOCKS and q.fraction_all() < RECHECK_QUIET:
            self._echo_free = False
            self._loud_blocks = 0  # AEC3 was idle while the line was echo-free: warm up again
            self._apm = _new_apm()  # a fresh one: no stale echo-path state
            log.info("echo canceller: the line has echo after all")

    def _take_ref(self, need: int = 0) -> bytes | None:
        """The next `need` bytes (default: one block) of queued bot audio, zero-padded at
        its end, or None when none is queued. Reads through the queued chunks by offset:
        a reply queued as one chunk of seconds is not copied again for every block."""
        if self._ref_bytes <= 0:
            return None
        need = need or self._block
        ref = self._ref
        pos = self._ref_pos
        parts = []
        got = 0
        while got < need and ref:
            head = ref[0]
            part = head[pos : pos + need - got]
            parts.append(part)
            got += len(part)
            pos += len(part)
            if pos == len(head):
                ref.popleft()
                pos = 0
        taken = b"".join(parts)
        self._ref_pos = pos
        self._ref_bytes = max(0, self._ref_bytes - len(taken))
        return taken if len(taken) == need else taken.ljust(need, b"\0")


class _QuietWindow:
    """The last `RECHECK_BLOCKS` quiet/loud verdicts with running counts, so each 10 ms
    block costs O(1) (this runs for every loud bot block of every call)."""

    def __init__(self) -> None:
        self._flags: deque[bool] = deque(maxlen=RECHECK_BLOCKS)
        self._all = 0  # quiet blocks among the last RECHECK_BLOCKS
        self._recent = 0  # quiet blocks among the last EVIDENCE_BLOCKS

    def add(self, quiet: bool, blocks: int = 1) -> None:
        """One verdict for `blocks` blocks in a row."""
        f = self._flags
        for _ in range(blocks):
            if len(f) >= EVIDENCE_BLOCKS:
                self._recent -= f[-EVIDENCE_BLOCKS]
            if len(f) == RECHECK_BLOCKS:
                self._all -= f[0]
            f.append(quiet)
            self._all += quiet
            self._recent += quiet

    @property
    def seen(self) -> int:
        """Verdicts in the window (at most `RECHECK_BLOCKS`)."""
        return len(self._flags)

    def fraction_recent(self) -> float:
        """Quiet share of the last `EVIDENCE_BLOCKS` verdicts (0.0 when none)."""
        n = min(EVIDENCE_BLOCKS, len(self._flags))
        return self._recent / n if n else 0.0

    def fraction_all(self) -> float:
        """Quiet share of the whole window (0.0 when empty)."""
        n = len(self._flags)
        return self._all / n if n else 0.0


def _energy(block: bytes, samples: int) -> float:
    """Sum of squares of an int16 block, from audioop's C RMS (~0.2 µs against numpy's
    1.4; the RMS is whole, so a near-silent block reads up to 1 LSB low)."""
    r = rms(block)
    return float(r * r * samples)


def _ms_of(dbfs: float) -> float:
    """Mean square of int16 samples at `dbfs` (full scale 32768)."""
    return float((32768.0 * 10 ** (dbfs / 20)) ** 2)


def _warn_unavailable() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("echo canceller unavailable (livekit binding failed: %r)", _IMPORT_ERROR)
