"""A database URL's password is masked wherever it would be printed."""

from __future__ import annotations

import io
import logging

import pytest

from hookline.server.redact import RedactingFormatter, redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://hookline:s3cret@db:5432/hookline", "postgresql://hookline:***@db:5432/hookline"),
        ("postgres://hookline@db/hookline", "postgres://hookline@db/hookline"),
        ("postgresql://db/hookline", "postgresql://db/hookline"),
        ("postgresql://u:p%40ss@db/x", "postgresql://u:***@db/x"),
        ("postgresql://u:p@ss/word@db/x", "postgresql://u:***@db/x"),  # a raw "@" or "/" in the password
        ("postgresql://u@db/x?sslmode=require&password=s3cret", "postgresql://u@db/x?sslmode=require&password=***"),
        ("postgresql://u:@db/x", "postgresql://u:@db/x"),
        ("sqlite:///var/lib/hookline.db", "sqlite:///var/lib/hookline.db"),
        ("not a url", "not a url"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("text", "url", "shown"),
    [
        # libpq quotes a malformed password back in its error.
        ('invalid percent-encoded token: "s3%zz"', "postgresql://u:s3%zz@db/x", 'invalid percent-encoded token: "***"'),
        ("password p@ss for u", "postgresql://u:p%40ss@db/x", "password *** for u"),  # decoded as well
        ("at postgresql://u:pw@db/x", "postgresql://u:pw@db/x", "at postgresql://u:***@db/x"),
        ("nothing to hide", None, "nothing to hide"),
    ],
)
def test_text_is_shown_without_the_password_wherever_it_is_quoted(text: str, url: str | None, shown: str) -> None:
    assert redact(text, url) == shown


def test_log_lines_and_their_tracebacks_are_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s", "postgresql://u:s3cret@db/x"))
    logger = logging.getLogger("test_redact")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("cannot reach postgresql://u:s3cret@db/x")
        except ValueError:
            logger.exception("connecting to %s failed", "postgresql://u:s3cret@db/x")
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "s3cret" not in logged
    assert logged.startswith("connecting to postgresql://u:***@db/x failed")
    assert "ValueError: cannot reach postgresql://u:***@db/x" in logged
