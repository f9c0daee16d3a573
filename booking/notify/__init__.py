"""Notifications: an outbox of rows written with the booking, and a sender that delivers
them (Telegram, SMS, e-mail, webhook) with retries, exactly once per row."""
