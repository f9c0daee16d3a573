"""Shared pieces of the fuzz tests: the example budget, JSON-ish strategies, leak checks.

`VOICEBOT_FUZZ_EXAMPLES` sets the examples per decoder: CI's default is small (the
suite must stay fast); the full run is `VOICEBOT_FUZZ_EXAMPLES=10000 pytest -m slow
tests/test_fuzz_*.py` (figures in docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("VOICEBOT_FUZZ_EXAMPLES", "150"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES < 1000,  # CI: the same cases every run; the long run explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)


def objects_with(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects that have some of `keys` (with their plausible values, or garbage)
    and some random keys: near-valid messages reach deep into a decoder."""
    known = st.fixed_dictionaries({}, optional={k: v | json_values for k, v in keys.items()})
    extra = st.dictionaries(st.text(max_size=10), json_values, max_size=3)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


def socket_fds() -> int:
    """Open sockets of this process (from /proc/self/fd)."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                n += 1
        except OSError:
            continue
    return n


async def settle_tasks(
    predicate: Callable[[asyncio.Task[Any]], bool] = lambda t: True,
) -> set[asyncio.Task[Any]]:
    """Tasks still alive (other than the caller) after the loop settles for a moment."""
    me = asyncio.current_task()
    for _ in range(50):
        left = {t for t in asyncio.all_tasks() if t is not me and not t.done() and predicate(t)}
        if not left:
            return set()
        await asyncio.sleep(0.02)
    return left
