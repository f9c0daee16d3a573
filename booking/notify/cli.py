"""`voicebot notifications list [--json]` and `voicebot notifications send`.

`list` shows what was sent, what waits for a retry and what failed (recipients masked).
`send` runs the outbox sender alone (a worker process; several may run at once) until
interrupted, or with `--until-empty` until nothing is due.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from booking.catalog import Catalog
from booking.notify.factory import build_sender
from booking.notify.notifier import Notifier
from booking.notify.settings import NotifySettings
from booking.store.base import open_store
from voicebot.config import load_config

DEFAULT_STORE = "sqlite:///data/voicebot.sqlite3"


async def run_cli(args: argparse.Namespace) -> int:
    """Dispatch `notifications list|send`."""
    cfg = load_config(getattr(args, "config", None))
    section = cfg.domain.get("booking") or {}
    url = getattr(args, "store", None) or section.get("store") or DEFAULT_STORE
    store = open_store(str(url))
    await store.open()
    try:
        if args.notifications_command == "list":
            rows = await store.outbox.list(status=args.status, limit=args.limit)
            if args.json:
                out = [r.to_json() for r in rows]
                print(json.dumps(out, ensure_ascii=False, indent=2))
                return 0
            for r in rows:
                print(
                    f"{r.id:>5} {r.created_at:%Y-%m-%d %H:%M} {r.kind:<9} {r.channel:<8} "
                    f"{r.status:<8} tries {r.attempts}  {r.booking_id or '-':<8} {r.last_error}"
                )
            if not rows:
                print("no notifications")
            return 0
        settings = NotifySettings.from_config(
            cfg.domain.get("notify"),
            os.environ,
            legacy_webhook_url=str(section.get("webhook_url") or ""),
        )
        if not settings.any_active:
            print("no notification channel is configured", file=sys.stderr)
            return 1
        catalog = Catalog.from_config(section)
        sender = build_sender(settings, store.outbox, Notifier(settings, lambda: catalog))
        try:
            if args.until_empty:
                while await sender.run_once():
                    pass
            else:
                await sender.run()
        finally:
            await sender.stop()
        st = await sender.stats()
        print(f"sent {st.sent}, retried {st.retried}, failed {st.failed}", file=sys.stderr)
        return 0
    except asyncio.CancelledError:
        return 130
    finally:
        await store.close()
