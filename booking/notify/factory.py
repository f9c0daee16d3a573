"""Channels and the sender from `NotifySettings`."""

from __future__ import annotations

from booking.notify.channels.base import Channel
from booking.notify.channels.email import EmailChannel
from booking.notify.channels.sms import SmsChannel
from booking.notify.channels.telegram import TelegramChannel
from booking.notify.channels.webhook import WebhookChannel
from booking.notify.notifier import Notifier
from booking.notify.outbox import Outbox
from booking.notify.sender import OutboxSender
from booking.notify.settings import NotifySettings
from booking.notify.templates import Templates
from voicebot.clock import Clock, RealClock


def build_channels(s: NotifySettings) -> dict[str, Channel]:
    """The active channels by name."""
    out: dict[str, Channel] = {}
    if s.telegram.active:
        out["telegram"] = TelegramChannel(s.telegram.api_url, s.telegram.token, s.telegram.chat_id)
    if s.sms.active:
        out["sms"] = SmsChannel(
            s.sms.provider, s.sms.url, s.sms.api_key, login=s.sms.login, sender=s.sms.sender
        )
    if s.email.active:
        e = s.email
        out["email"] = EmailChannel(
            e.host,
            e.port,
            e.from_,
            e.to,
            starttls=e.starttls,
            username=e.username,
            password=e.password,
            timeout_s=e.timeout_s,
        )
    if s.webhook.active:
        out["webhook"] = WebhookChannel(s.webhook.url, timeout_s=s.webhook.timeout_s)
    return out


def build_sender(
    s: NotifySettings,
    outbox: Outbox,
    notifier: Notifier | None = None,
    *,
    clock: Clock | None = None,
    templates: Templates | None = None,
) -> OutboxSender:
    """A sender over `outbox` (not started). The clock is the real wall clock by default:
    outbox rows are stamped with real UTC time, whatever time a simulation pretends."""
    return OutboxSender(
        outbox,
        build_channels(s),
        templates or Templates(),
        clock or RealClock(),
        s.sender,
        notifier=notifier,
    )
