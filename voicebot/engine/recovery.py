"""When a recognition stream fails: retry, fail over, or give up. The one place that decides.

The call's `ContinuousRecognizer` (recognition.py) is the only owner of STT recovery:
vendor streams are single connections that raise typed errors, `FailoverRecognizer`
opens streams with zero retries, and this module turns each failure into a verdict
under the one `RecoveryPolicy` (`engine.recovery` in config.yaml):

- `ReopenNow` (SpeechKit refused a fresh stream before any response: expired token,
  grpc-aio race): open a new stream at once, once; a second in a row counts as its cause.
- `StreamLimitError` (a per-stream cap, a vendor session limit, an idle close): nobody's
  failure; reopen after the first backoff step. Never a reason to fail over.
- fatal (`AuthError`, `RateLimitError`, any non-retriable error): fail over at once when
  a next provider exists; otherwise keep retrying with backoff (a key may come back).
- a retriable loss (drop, 5xx, timeout): fail over after `failover_after_losses` in a
  row on the same provider with no result in between; otherwise retry with backoff.
- `max_attempts` failed streams in a row with no result: give up (the call goes on
  without recognition and says so).

Backoff: `backoff_s * 2**(attempt-1)`, capped at `backoff_max_s`; waits go through the
call's injected clock.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from voicebot.config import RecoveryPolicy
from voicebot.providers.base import (
    AuthError,
    ProviderError,
    RateLimitError,
    ReopenNow,
    StreamLimitError,
    SupportsFailover,
)

log = logging.getLogger(__name__)


class Action(enum.Enum):
    """What the recognizer does after a failure."""

    RETRY = "retry"  # open a new stream on the same provider after `delay_s`
    FAIL_OVER = "fail_over"  # the recognizer already moved on: open a new stream now
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one failure: an action, the pause before it (s) and why."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""


def is_fatal(err: ProviderError) -> bool:
    """Errors that retrying the same provider will not fix."""
    if isinstance(err, StreamLimitError):
        return False  # a per-stream cap, nobody's failure
    return isinstance(err, (AuthError, RateLimitError)) or not err.retriable


class Recovery:
    """One call's recovery state: failures in a row, losses on the current provider.

    `failover` is the call's own failover view when its recognizer has one; a verdict
    `FAIL_OVER` means `failover.fail_over()` has already moved it to the next provider.
    """

    def __init__(self, policy: RecoveryPolicy, failover: SupportsFailover | None = None) -> None:
        self.policy = policy
        self._failover = failover
        self.attempts = 0  # failed streams (or opens) in a row with no result in between
        self.losses = 0  # retriable losses in a row on the current provider
        self._reopened = False

    def results(self) -> None:
        """The stream delivered results: every count starts over."""
        self.attempts = 0
        self.losses = 0
        self._reopened = False

    def rotated(self) -> None:
        """We closed a healthy stream ourselves (before a per-stream cap)."""
        self.attempts = 0

    def failure(self, err: ProviderError) -> Verdict:
        """The verdict for one failed open or stream."""
        if isinstance(err, ReopenNow):
            if not self._reopened:
                self._reopened = True
                return Verdict(Action.RETRY, 0.0, f"{err.code}: reopen at once")
            err = err.cause
        self.attempts += 1
        if is_fatal(err):
            if self._fail_over(f"{err.code}: fatal"):
                return Verdict(Action.FAIL_OVER, 0.0, f"{err.code}: fatal")
        elif not isinstance(err, StreamLimitError):
            self.losses += 1
            if self.losses >= max(1, self.policy.failover_after_losses):
                reason = f"{err.code}: {self.losses} connection losses in a row"
                if self._fail_over(reason):
                    return Verdict(Action.FAIL_OVER, 0.0, reason)
        if self.attempts > self.policy.max_attempts:
            return Verdict(Action.GIVE_UP, 0.0, f"{err.code}: {self.attempts - 1} retries")
        delay = min(self.policy.backoff_s * 2 ** (self.attempts - 1), self.policy.backoff_max_s)
        return Verdict(Action.RETRY, delay, err.code)

    def _fail_over(self, reason: str) -> bool:
        if self._failover is None or not self._failover.fail_over(reason):
            return False
        self.attempts = 0
        self.losses = 0
        self._reopened = False
        return True
