"""PCM helpers shared by the engine and the transports.

`audioop` is C code and bit-exact with every other audioop-based stack; it is in the
standard library up to Python 3.12 and comes from `audioop-lts` on 3.13+.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # Deprecated on 3.11/3.12 (PEP 594); audioop-lts provides the same module on 3.13+.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_WIDTH = 2  # LINEAR16: signed 16-bit little-endian

__all__ = ["SAMPLE_WIDTH", "audioop", "peak", "rms"]


def peak(pcm: bytes) -> int:
    """The largest absolute sample of LINEAR16 audio (0 for none)."""
    return audioop.max(pcm, SAMPLE_WIDTH) if pcm else 0


def rms(pcm: bytes) -> int:
    """Root mean square of LINEAR16 audio (0 for none; a trailing odd byte is ignored)."""
    n = len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH
    return audioop.rms(pcm[:n] if n != len(pcm) else pcm, SAMPLE_WIDTH) if n else 0
