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
