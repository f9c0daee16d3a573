"""The per-frame playout questions answered cheaply, and exactly as before.

The session asks "is the bot still playing?" for every 20 ms caller frame and waits for
each reply's end; these tests pin the cheap forms to the definitions they replace, on
the virtual clock."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.clock import VirtualClock
from voicebot.engine.speaking import PLAYED_POLL_S, SpeechOutput
from voicebot.transports.base import AckPlayout, ClockPlayout
from voicebot.transports.pacing import PacedSender
from voicebot.transports.voximplant import VoxPlayout

RATE = 8000
MS = RATE * 2 // 1000  # bytes of LINEAR16 per ms

# One step of a pacer's life: queue audio, send a frame's worth, let time pass, or the
# far end clears / reports it ran dry.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(1, 3000)),
        st.tuples(st.just("send"), st.integers(1, 5)),
        st.tuples(st.just("wait"), st.integers(0, 900)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_playing_is_played_below_queued(steps: list[tuple[str, int]]) -> None:
    """`PacedSender.playing()` (what `VoxPlayout.is_playing` asks per frame) is the old
    `played_ms() < queued_ms()` in every state the sender can be in."""
    clock = VirtualClock()

    async def write(frame: bytes) -> None:
        return None

    pacer = PacedSender(write, clock, sample_rate=RATE, max_lead_ms=2000)
    playout = VoxPlayout(pacer)
    for kind, n in steps:
        if kind == "push":
            pacer.push(bytes(n * MS // 10 * 2))
        elif kind == "send":  # what the sender's loop does per frame, without its task
            for _ in range(n):
                size = min(pacer.frame_bytes, len(pacer.queue))
                if not size:
                    break
                del pacer.queue[:size]
                pacer.sent_end = max(pacer.sent_end, clock.monotonic()) + size / MS / 1000
                pacer.sent_ms += size / MS
        elif kind == "wait":
            clock._t += n / 1000  # time passes; nobody sleeps on it here
        else:
            pacer.far_end_cleared()
        assert playout.is_playing() == (playout.played_ms() < playout.queued_ms())


class _Waiter(SpeechOutput):
    """Just enough of a session to run `_wait_played`."""

    def __init__(self, clock: VirtualClock, playout: object) -> None:
        self.clock = clock
        self.transport = SimpleNamespace(playout=playout)  # type: ignore[assignment]
        self._ended = None


async def _wait(
    clock: VirtualClock, waiter: _Waiter, until_ms: float | None = None
) -> tuple[float, int]:
    """Run `_wait_played` to its end in 10 ms steps: (when it returned, sleeps taken)."""
    sleeps = 0
    sleep = clock.sleep

    async def counting(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await sleep(seconds)

    clock.sleep = counting  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(waiter._wait_played(until_ms))
    while not task.done():
        await clock.advance(0.01)
    await task
    return clock.monotonic(), sleeps


async def test_a_playout_clock_is_slept_towards_not_polled() -> None:
    """3 s of audio on a clock-driven playout: a few sleeps, not one per 50 ms, and the
    end is still seen within one poll."""
    clock = VirtualClock()
    playout = ClockPlayout(clock, RATE)
    playout.add(3000 * MS)
    ended_at, sleeps = await _wait(clock, _Waiter(clock, playout))
    assert 3.0 <= ended_at <= 3.0 + PLAYED_POLL_S + 0.011
    assert sleeps <= 10  # 60 with a 50 ms poll


async def test_a_playout_clock_wait_until_a_point_stops_there() -> None:
    clock = VirtualClock()
    playout = ClockPlayout(clock, RATE)
    playout.add(3000 * MS)
    ended_at, _ = await _wait(clock, _Waiter(clock, playout), until_ms=1200)
    assert 1.2 <= ended_at <= 1.2 + PLAYED_POLL_S + 0.011


async def test_an_acknowledged_playout_is_still_polled() -> None:
    """The far end's acknowledgements end playback whenever they say so (here at 1.23 s
    of a 3 s reply): no estimate to sleep towards, so the wait polls and sees the end
    within one poll."""
    clock = VirtualClock()
    playout = AckPlayout(RATE)
    playout.add(3000 * MS)

    async def far_end() -> None:
        await clock.sleep(1.23)
        playout.ack(3000)

    acks = asyncio.get_running_loop().create_task(far_end())
    ended_at, sleeps = await _wait(clock, _Waiter(clock, playout))
    await acks
    assert 1.23 <= ended_at <= 1.23 + PLAYED_POLL_S + 0.011
    assert sleeps >= 1.23 / PLAYED_POLL_S - 1
