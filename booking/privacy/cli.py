"""`voicebot privacy purge` and `voicebot privacy forget --phone +7…` (flags parsed in
voicebot/cli.py). Both print a deletion act (booking/privacy/act.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from booking.extract.phone import normalize_phone
from booking.privacy import PrivacySettings
from booking.privacy.act import deletion_act
from booking.privacy.retention import purge
from booking.store.base import open_store
from voicebot.config import load_config
from voicebot.redact import redact_url

DEFAULT_STORE = "sqlite:///data/voicebot.sqlite3"


async def run_cli(args: argparse.Namespace) -> int:
    """Run the purge or the deletion; exit 2 on a phone that does not parse."""
    cfg = load_config(getattr(args, "config", None))
    section = cfg.domain.get("booking") or {}
    settings = PrivacySettings.from_config(cfg.domain.get("privacy"))
    url = str(getattr(args, "store", None) or section.get("store") or DEFAULT_STORE)
    phone = None
    if args.privacy_command == "forget":
        phone = normalize_phone(args.phone)
        if phone is None:
            print(f"not a valid phone number: {args.phone!r}", file=sys.stderr)
            return 2
    store = open_store(url)
    await store.open()
    try:
        now = datetime.now(UTC)
        if phone is not None:
            report = await store.forget_phone(phone)
            subject = phone
        else:
            report = await purge(store, settings, now)
            subject = (
                f"срок хранения: звонки {settings.retention_days} дн., "
                f"данные записи {settings.booking_retention_days} дн. после визита"
            )
    finally:
        await store.close()
    print(deletion_act(report, subject=subject, at=now, store=redact_url(url)), end="")
    return 0
