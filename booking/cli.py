"""`voicebot bookings list|cancel` and `voicebot diagram` (flags parsed in voicebot/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, time, timedelta

from booking.backends.factory import open_backend
from booking.extract.phone import format_phone
from booking.settings import BookingSettings
from booking.store.base import open_store
from voicebot.config import load_config


async def run_cli(args: argparse.Namespace) -> int:
    """`voicebot bookings list|cancel` through the configured backend: the local (or
    `--store`) store, or the salon's YCLIENTS account."""
    section = load_config(getattr(args, "config", None)).domain.get("booking")
    settings = BookingSettings.parse(section, store_override=getattr(args, "store", None))
    catalog = settings.catalog
    store = open_store(settings.store)
    await store.open()
    backend = open_backend(settings.section, catalog, store)
    try:
        await backend.open()
        catalog = backend.catalog
        if args.bookings_command == "cancel":
            done = await backend.cancel(args.id)
            if done is None:
                print(f"no active booking {args.id}", file=sys.stderr)
                return 1
            print(f"cancelled {done.id}")
            return 0
        if args.date:
            day = date.fromisoformat(args.date)
            start = datetime.combine(day, time(0), tzinfo=catalog.salon.tz)
            bookings = list(await backend.list_between(start, start + timedelta(days=1)))
        elif backend.kind == "local":
            bookings = list(await store.list_all())
        else:  # a CRM's journal has no "all": the coming two months
            start = datetime.now(catalog.salon.tz)
            bookings = list(await backend.list_between(start, start + timedelta(days=60)))
        names = {s.id: s.name for s in catalog.services}
        if args.json:
            out = [b.to_json(names.get(b.service)) for b in bookings]
            print(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            for b in bookings:
                print(
                    f"{b.id}  {b.start:%Y-%m-%d %H:%M}-{b.end:%H:%M}  {b.master:<8} "
                    f"{names.get(b.service, b.service):<18} {b.name}  {format_phone(b.phone)}"
                )
            if not bookings:
                print("no bookings")
        return 0
    finally:
        await backend.close()
        await store.close()


def run_diagram(args: argparse.Namespace) -> int:
    """`voicebot diagram`: print the state machine as Mermaid."""
    from booking.diagram import mermaid

    print(mermaid(), end="")
    return 0
