"""E-mail to the salon through SMTP with aiosmtplib (STARTTLS on 587 by default).

The Message-ID is derived from the outbox row key, so a mail server or client that
deduplicates by Message-ID drops a repeat. SMTP 4xx answers and connection problems are
temporary, 5xx permanent; an authentication failure stops the channel.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from booking.notify.channels.base import ChannelDown, Rejected, RetryLater
from booking.notify.message import OutboxRow
from booking.notify.templates import Rendered


def build_message(
    sender: str, to: tuple[str, ...], message: Rendered, key: str, domain: str = "voicebot.local"
) -> EmailMessage:
    """The MIME message (UTF-8 text/plain)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = message.subject or "voicebot"
    msg["Date"] = formatdate(localtime=False)
    safe = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in key)
    msg["Message-ID"] = f"<{safe}@{domain}>"
    msg.set_content(message.text)
    return msg


class EmailChannel:
    """`Channel` sending one message per row to the configured recipients."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        to: tuple[str, ...],
        *,
        starttls: bool = True,
        username: str = "",
        password: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.starttls = starttls
        self._user, self._password = username, password
        self.timeout_s = timeout_s

    async def send(self, row: OutboxRow, message: Rendered) -> str:
        """One SMTP session per message."""
        msg = build_message(self.sender, self.to, message, row.key)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.host,
                port=self.port,
                start_tls=self.starttls,
                username=self._user or None,
                password=self._password or None,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPAuthenticationError as e:
            raise ChannelDown(f"smtp auth: {e.code}") from None
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise Rejected(f"smtp recipients refused: {len(e.recipients)}") from None
        except aiosmtplib.SMTPResponseException as e:
            if 400 <= e.code < 500:
                raise RetryLater(f"smtp {e.code}") from None
            raise Rejected(f"smtp {e.code}") from None
        except (aiosmtplib.SMTPException, OSError) as e:
            raise RetryLater(f"smtp: {type(e).__name__}") from None
        return str(msg["Message-ID"])

    async def aclose(self) -> None:
        """Nothing pooled."""
