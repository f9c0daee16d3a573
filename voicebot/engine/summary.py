"""The `done` summary of a call: counts, median stage latencies, speculation and
«waiting for the rest» figures, and the dialogue's own summary."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebot.engine.session import CallSession


def call_summary(
    session: CallSession, reason: str, dialogue_summary: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary sent in `done` and returned by `CallSession.run()`."""
    lat_ok = [x for t in session.turns if (x := t.latency())]
    return {
        "session_id": session.session_id,
        "reason": reason,
        "duration_ms": session._ms(),
        "turns": len(session.turns),
        "utterances": session.assembler.utterances,
        "ignored_utterances": len(session.ignored_utterances),
        "latency_ms_median": {
            k: round(statistics.median(x[k] for x in lat_ok), 2)
            for k in (lat_ok[0] if lat_ok else {})
        },
        "recognition": {
            "streams": session.recognition.streams_opened,
            "rotations": session.recognition.rotations,
            "reconnects": session.recognition.reconnects,
        },
        "events": session.events.summary(),
        "speculation": session.speculator.stats.as_dict() if session.speculator else None,
        "continuation": {
            "holds": session.continuation.holds,
            "joined": session.continuation.joined,
            "expired": session.continuation.expired,
            "onset_cancels": session.continuation.onset_cancels,
        },
        "dialogue": dict(dialogue_summary),
    }
