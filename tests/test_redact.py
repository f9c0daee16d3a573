from voicebot.redact import mask_number, redact_url


def test_redact_url_hides_passwords_and_query_tokens() -> None:
    assert (
        redact_url("postgresql://bot:s3cret@db:5432/salon") == "postgresql://bot:***@db:5432/salon"
    )
    assert redact_url("https://hooks.example/x?token=abc") == "https://hooks.example/x?***"
    assert redact_url("sqlite:///data/voicebot.sqlite3") == "sqlite:///data/voicebot.sqlite3"
    assert "s3cret" not in redact_url("postgresql://:s3cret@db/x")


def test_mask_number_keeps_two_digits() -> None:
    assert mask_number("+79161234567") == "+*********67"
    assert mask_number("8 916 123-45-67") == "* *** ***-**-67"
    assert mask_number(None) == "-"


def test_redacted_config_hides_every_secret() -> None:
    from voicebot.config import load_config

    cfg = load_config(
        env={
            "YANDEX_API_KEY": "AQVN-secret-key",
            "VOICEBOT_VOXIMPLANT_SECRET": "vox-secret",
        }
    )
    cfg.domain["booking"] = {
        **cfg.domain["booking"],
        "store": "postgresql://bot:pg-secret@db/salon",
        "webhook_url": "https://crm.example/hook?token=hook-secret",
    }
    from booking.settings import BookingSettings

    text = repr(cfg.redacted(domain=BookingSettings.parse(cfg.domain["booking"]).redacted()))
    assert "pg-secret" not in repr(cfg.redacted())  # without the dialogue's say: not shown
    for secret in ("AQVN-secret-key", "vox-secret", "pg-secret", "hook-secret"):
        assert secret not in text
    assert "postgresql://bot:***@db/salon" in text
