"""The `voicebot` command line.

Each subcommand's work lives in the module that owns it; this file only parses flags
and imports lazily, so `voicebot --help` stays fast and a missing optional dependency
of one command never breaks another.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from datetime import date


def _iso_date(text: str) -> str:
    """An argparse `type`: `text` unchanged if it is a calendar date YYYY-MM-DD.

    Raises argparse.ArgumentTypeError otherwise, so a typo is a usage error (exit 2)
    rather than a traceback from deep inside the command.
    """
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voicebot", description="Real-time voice-bot engine")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING...")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="browser demo, Voximplant and AudioSocket endpoints")
    s.add_argument("--host", default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--config", default=None)
    s.add_argument(
        "--emulator-stt-script", default=None, help="transcript script for the offline emulator"
    )
    s.add_argument("--audiosocket-port", type=int, default=None)
    s.add_argument(
        "--store", default=None, help="booking store URL (sqlite:///... or postgresql://...)"
    )
    s.add_argument("--stt", default=None, help="speech recognition provider")
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes sharing the ports (default: server.workers, 1)",
    )
    s.set_defaults(target="voicebot.server:run_cli")

    e = sub.add_parser("emulator", help="run the local Yandex Cloud emulator (a test double)")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--stt-port", type=int, default=50051)
    e.add_argument("--tts-port", type=int, default=50052)
    e.add_argument("--http-port", type=int, default=8089)
    e.add_argument("--api-key", default=None)
    e.add_argument("--stt-script", default=None, help="one utterance per line, used in order")
    e.add_argument("--write-sa-key", default=None, help="write a service-account key JSON here")
    e.add_argument("--config", default=None)
    e.set_defaults(target="voicebot.emulator.main:run_cli")

    m = sub.add_parser("simulate", help="a whole scripted call, offline, on the emulator")
    m.add_argument("--dialogue", required=True, help="YAML dialogue file")
    m.add_argument("--json", action="store_true")
    m.add_argument("--record", default=None, help="stereo WAV: caller left, bot right")
    m.add_argument("--speed", type=float, default=1.0)
    m.add_argument("--config", default=None)
    m.add_argument("--store", default=None)
    m.add_argument("--stt", default=None, help="speech recognition provider")
    m.set_defaults(target="voicebot.simulate:run_cli")

    b = sub.add_parser("bench", help="calls per core, overhead and voice-to-voice latency")
    b.add_argument(
        "--calls",
        type=int,
        default=None,
        help="concurrent calls (default 10); with --ramp the last step (default: every step)",
    )
    b.add_argument("--duration", type=float, default=30.0)
    b.add_argument("--transport", choices=["ws", "voximplant", "audiosocket"], default="ws")
    b.add_argument("--ramp", action="store_true")
    b.add_argument(
        "--dialogue",
        choices=["booking", "chat"],
        default="booking",
        help="chat: YandexGPT on every turn's critical path (the emulator's fixed TTFT and rate)",
    )
    b.add_argument(
        "--suite",
        action="store_true",
        help="speculation hit rate over tests/dialogues (in-process, simulated calls)",
    )
    b.add_argument("--json", action="store_true")
    b.add_argument("--config", default=None)
    b.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a long run (voicebot.bench.soak)",
    )
    b.add_argument(
        "--faults", action="store_true", help="soak: inject STT drops, GPT and TTS errors"
    )
    b.add_argument(
        "--profile", default=None, metavar="DIR", help="py-spy the server into DIR (extra bench)"
    )
    b.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (serve --workers N); N > 1 runs on PostgreSQL",
    )
    b.add_argument(
        "--store",
        default=None,
        help="booking store URL for the server (default: a fresh SQLite per step; "
        "with --workers > 1 a throwaway PostgreSQL the bench starts)",
    )
    b.set_defaults(target="voicebot.bench:run_cli")

    a = sub.add_parser("audiosocket", help="run only the AudioSocket server (Asterisk/Zadarma)")
    a.add_argument("--port", type=int, default=None)
    a.add_argument("--host", default=None)
    a.add_argument("--config", default=None)
    a.add_argument("--store", default=None)
    a.set_defaults(target="voicebot.server:run_audiosocket_cli")

    k = sub.add_parser("bookings", help="list or cancel bookings")
    ksub = k.add_subparsers(dest="bookings_command", required=True)
    kl = ksub.add_parser("list")
    kl.add_argument("--date", type=_iso_date, default=None, help="YYYY-MM-DD")
    kl.add_argument("--json", action="store_true")
    kl.add_argument("--store", default=None)
    kl.add_argument("--config", default=None)
    kc = ksub.add_parser("cancel")
    kc.add_argument("id")
    kc.add_argument("--store", default=None)
    kc.add_argument("--config", default=None)
    k.set_defaults(target="booking.cli:run_cli")

    y = sub.add_parser(
        "yclients-emulator", help="run the local YCLIENTS/Altegio API emulator (a test double)"
    )
    y.add_argument("--host", default="127.0.0.1")
    y.add_argument("--port", type=int, default=8095)
    y.add_argument("--config", default=None, help="seed services/masters from this config")
    y.add_argument("--company-id", type=int, default=4242)
    y.add_argument("--timezone", default=None, help="company zone (default: booking.salon)")
    y.add_argument("--partner-token", default=None, help="default: a random one, printed")
    y.add_argument("--user-token", default=None, help="default: a random one, printed")
    y.add_argument("--now", default=None, help="ISO datetime the emulator's clock starts at")
    y.set_defaults(target="booking.yclients.emulator:run_cli")

    n = sub.add_parser("notifications", help="the notification outbox: list, or run the sender")
    nsub = n.add_subparsers(dest="notifications_command", required=True)
    nl = nsub.add_parser("list", help="what was sent, what waits, what failed")
    nl.add_argument("--json", action="store_true")
    nl.add_argument("--status", default=None, choices=["pending", "sent", "failed", "skipped"])
    nl.add_argument("--limit", type=int, default=200)
    nl.add_argument("--store", default=None)
    nl.add_argument("--config", default=None)
    ns = nsub.add_parser("send", help="run the outbox sender alone (a worker process)")
    ns.add_argument("--until-empty", action="store_true", help="exit when nothing is due")
    ns.add_argument("--store", default=None)
    ns.add_argument("--config", default=None)
    n.set_defaults(target="booking.notify.cli:run_cli")
    v = sub.add_parser("privacy", help="personal data: retention purge, forget a person")
    vsub = v.add_subparsers(dest="privacy_command", required=True)
    vp = vsub.add_parser("purge", help="delete what is past its retention term (serve: daily)")
    vf = vsub.add_parser("forget", help="erase every record of one phone; prints a deletion act")
    vf.add_argument("--phone", required=True, help="the person's phone, e.g. +79161234567")
    for vx in (vp, vf):
        vx.add_argument("--store", default=None)
        vx.add_argument("--config", default=None)
    v.set_defaults(target="booking.privacy.cli:run_cli")

    d = sub.add_parser("diagram", help="print the dialogue state machine as Mermaid")
    d.set_defaults(target="booking.cli:run_diagram")
    return p


def main(argv: Sequence[str] | None = None, *, target: str | None = None) -> int:
    """Parse `argv`, set up logging, run the subcommand's `module:function`.

    `target` runs another function with the same flags (the bench's server is
    `voicebot serve` with bench routes)."""
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(raw_argv)
    args.argv = raw_argv  # `serve --workers N` starts its workers with the same flags
    from voicebot.ops.logs import configure

    # `serve` switches to the configured `log_format` once it has read the config.
    configure("text", (args.log_level or "INFO").upper())
    # httpx logs every request URL at INFO; webhook URLs often carry a token.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    module_name, _, func_name = (target or args.target).partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    result = func(args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
