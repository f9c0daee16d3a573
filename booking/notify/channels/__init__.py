"""Delivery channels: thin adapters (Telegram, SMS.ru/SMSC, SMTP, webhook) whose wire
codecs are pure functions, behind the `Channel` protocol in `base`."""
