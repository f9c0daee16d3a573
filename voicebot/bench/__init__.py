"""`voicebot bench`: calls per core, engine overhead and voice-to-voice latency.

`runner` starts the three processes and runs the steps, `server` is the process under
test (`voicebot serve` plus bench routes), `load` the load generator (`caller`,
`callers`), `audio` the callers' speech, `measure` what is measured and reported,
`report` regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse


def run_cli(args: argparse.Namespace) -> int:
    """The `voicebot bench` command (flags parsed in voicebot/cli.py)."""
    from voicebot.bench.runner import run_cli as run

    return run(args)
