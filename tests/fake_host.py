"""The one test call host: `voicebot.transports.host.CallHost` (and what `create_app`
needs beyond it) without providers, so protocol layers are tested alone.

Sessions come from `make_session(host, transport, record)`; `record` is what the
transport passed to `open_call` plus the session id and the `stt_metadata` the real
`Runtime` would send (built by the same `script_metadata` helper, behind the same
`emulator_hooks` check).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from voicebot.clock import Clock, RealClock
from voicebot.config import Config
from voicebot.emulator.scripts import script_metadata
from voicebot.ops.health import Readiness
from voicebot.transports.audiosocket_register import CallRegistry

SessionMaker = Callable[["FakeHost", Any, dict[str, Any]], Any]


class FakeHost:
    """Records every call opened and released; capacity as `Runtime` counts it."""

    def __init__(
        self,
        cfg: Config | None = None,
        *,
        make_session: SessionMaker,
        offline: bool = True,
        emulator_hooks: bool = True,  # like Runtime offline: caller scripts pass
        clock: Clock | None = None,
    ) -> None:
        self.cfg = cfg or Config()
        self.offline = offline
        self.emulator_hooks = emulator_hooks
        self.emulator = None
        self.crash = False  # read by session makers that can fail on purpose
        self.modes: dict[str, Any] = {}  # dialogues a browser caller may pick
        self.default_mode: str | None = None
        self._clock = clock or RealClock()
        self._make = make_session
        self.audiosocket_registry = CallRegistry()
        self.readiness = Readiness(self.cfg.server.overload, self._clock.monotonic)
        self.turn_metrics: deque[dict[str, Any]] = deque(maxlen=1000)
        self.opened: list[dict[str, Any]] = []  # what each open_call got, in order
        self.sessions: list[Any] = []  # every session opened, in order
        self.live: dict[str, Any] = {}  # opened and not released, by session id
        self.released: list[Any] = []

    @property
    def clock(self) -> Clock:
        return self._clock

    def open_call(self, transport: Any, **kwargs: Any) -> Any:
        record = dict(kwargs)
        sid = kwargs.get("session_id") or f"call-{len(self.opened) + 1}"
        record["stt_metadata"] = script_metadata(
            self.emulator_hooks, kwargs.get("script"), kwargs.get("script_id") or sid
        )
        self.opened.append(record)
        session = self._make(self, transport, record)
        self.sessions.append(session)
        self.live[session.session_id] = session
        return session

    def release_call(self, call: Any) -> None:
        self.released.append(call)
        self.live.pop(call.session_id, None)

    def has_capacity(self, pending: int = 0, channel: str | None = None) -> bool:
        if self.readiness.draining:
            return False
        return len(self.live) + pending < self.cfg.server.max_sessions

    def live_calls(self) -> int:
        return len(self.live)

    def public_info(self) -> dict[str, str]:
        return {}

    def mount_dialogue_routes(self, app: Any) -> None:
        return None

    def by_id(self, session_id: str) -> Any:
        """The session with this id, live or released."""
        return next(s for s in self.sessions if s.session_id == session_id)

    async def aclose(self) -> None:
        return None
