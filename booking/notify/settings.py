"""The `notify:` config section, typed, with secrets from the environment.

A channel is active when its credentials/addresses are present (and `enabled` is not
false); `enabled: true` without them is a start-up error, so a salon never believes a
channel works that cannot. Every API base URL is overridable (tests point them at local
fakes). Environment: VOICEBOT_TELEGRAM_BOT_TOKEN, VOICEBOT_TELEGRAM_CHAT_ID,
VOICEBOT_SMS_API_KEY (SMS.ru api_id, or SMSC password/API key), VOICEBOT_SMS_LOGIN
(SMSC), VOICEBOT_SMTP_USERNAME, VOICEBOT_SMTP_PASSWORD.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EVENTS = ("booked", "cancelled", "handoff")
SMS_URLS = {"smsru": "https://sms.ru", "smsc": "https://smsc.ru"}


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    """Bot API `sendMessage` to the salon admin's chat."""

    enabled: bool | None = None
    api_url: str = "https://api.telegram.org"
    events: tuple[str, ...] = EVENTS
    token: str = field(default="", repr=False)
    chat_id: str = ""

    @property
    def active(self) -> bool:
        """On when the token and chat id are set, unless switched off."""
        return self.enabled is not False and bool(self.token and self.chat_id)


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """SMS to the client through SMS.ru (`smsru`) or SMSC (`smsc`)."""

    enabled: bool | None = None
    provider: str = "smsru"
    api_url: str = ""
    sender: str = ""
    events: tuple[str, ...] = ("booked", "cancelled")
    skip_if_yclients_sms: bool = True
    api_key: str = field(default="", repr=False)
    login: str = ""

    @property
    def url(self) -> str:
        """The provider's base URL (overridable)."""
        return (self.api_url or SMS_URLS[self.provider]).rstrip("/")

    @property
    def active(self) -> bool:
        """On when the key (and SMSC login) are set, unless switched off."""
        need_login = self.provider == "smsc"
        return (
            self.enabled is not False
            and bool(self.api_key)
            and (bool(self.login) or not need_login)
        )


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """E-mail to the salon's mailbox(es) through SMTP (aiosmtplib)."""

    enabled: bool | None = None
    host: str = ""
    port: int = 587
    starttls: bool = True
    from_: str = ""
    to: tuple[str, ...] = ()
    events: tuple[str, ...] = EVENTS
    timeout_s: float = 10.0
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def active(self) -> bool:
        """On when a host, a sender and recipients are set, unless switched off."""
        return self.enabled is not False and bool(self.host and self.from_ and self.to)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """POST of the event JSON to a URL (`booking.webhook_url` is the old name)."""

    url: str = ""
    events: tuple[str, ...] = ("booked",)
    timeout_s: float = 5.0

    @property
    def active(self) -> bool:
        """On when a URL is set."""
        return bool(self.url)


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """Delivery: attempts, exponential backoff (seconds), lease, poll, drain bound."""

    max_attempts: int = 12
    backoff_s: float = 2.0
    max_backoff_s: float = 900.0
    lease_s: float = 60.0
    poll_s: float = 1.0
    drain_timeout_s: float = 3.0


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The whole `notify:` section."""

    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    sender: SenderSettings = field(default_factory=SenderSettings)

    @property
    def any_active(self) -> bool:
        """Whether any channel will send."""
        return any(c.active for c in (self.telegram, self.sms, self.email, self.webhook))

    @classmethod
    def from_config(
        cls,
        raw: Mapping[str, Any] | None,
        env: Mapping[str, str],
        *,
        legacy_webhook_url: str = "",
    ) -> NotifySettings:
        """Parse; ValueError for unknown keys, bad values, or a channel switched on
        without what it needs."""
        raw = dict(raw or {})
        _known(raw, {"telegram", "sms", "email", "webhook", "sender"}, "notify")
        tg = _build(
            TelegramSettings, raw.get("telegram"), "notify.telegram", secret={"token", "chat_id"}
        )
        tg = dataclasses.replace(
            tg,
            token=env.get("VOICEBOT_TELEGRAM_BOT_TOKEN", ""),
            chat_id=env.get("VOICEBOT_TELEGRAM_CHAT_ID", ""),
        )
        sms = _build(SmsSettings, raw.get("sms"), "notify.sms", secret={"api_key", "login"})
        if sms.provider not in SMS_URLS:
            raise ValueError("config: notify.sms.provider must be smsru or smsc")
        sms = dataclasses.replace(
            sms,
            api_key=env.get("VOICEBOT_SMS_API_KEY", ""),
            login=env.get("VOICEBOT_SMS_LOGIN", ""),
        )
        email_raw = dict(raw.get("email") or {})
        if "from" in email_raw:
            email_raw["from_"] = email_raw.pop("from")
        email = _build(EmailSettings, email_raw, "notify.email", secret={"username", "password"})
        email = dataclasses.replace(
            email,
            username=env.get("VOICEBOT_SMTP_USERNAME", ""),
            password=env.get("VOICEBOT_SMTP_PASSWORD", ""),
        )
        hook = _build(WebhookSettings, raw.get("webhook"), "notify.webhook")
        if not hook.url and legacy_webhook_url:
            hook = dataclasses.replace(hook, url=legacy_webhook_url)
        sender = _build(SenderSettings, raw.get("sender"), "notify.sender")
        for name, ch in (("telegram", tg), ("sms", sms), ("email", email)):
            if ch.enabled is True and not ch.active:
                raise ValueError(
                    f"config: notify.{name}.enabled is true but its settings/env are missing"
                )
            bad = set(ch.events) - set(EVENTS)
            if bad:
                raise ValueError(f"config: notify.{name}.events: unknown {sorted(bad)}")
        return cls(telegram=tg, sms=sms, email=email, webhook=hook, sender=sender)


def _known(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in raw:
        if key not in known:
            raise ValueError(f"config: unknown setting {where}.{key}")


def _build(cls: type, raw: Any, where: str, secret: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    data = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _known(
        {("from" if k == "from_" else k): v for k, v in data.items()},
        {("from" if n == "from_" else n) for n in fields} - secret,
        where,
    )
    kw: dict[str, Any] = {}
    for key, value in data.items():
        default = fields[key].default
        if isinstance(default, tuple) or key in {"events", "to"}:
            kw[key] = tuple(str(v) for v in ([value] if isinstance(value, str) else value or ()))
        elif isinstance(default, bool) or key in {"starttls", "skip_if_yclients_sms"}:
            kw[key] = bool(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            kw[key] = int(value)
        elif isinstance(default, float):
            kw[key] = float(value)
        elif key == "enabled":
            kw[key] = None if value in (None, "auto") else bool(value)
        else:
            kw[key] = str(value)
    return cls(**kw)
