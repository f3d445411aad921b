"""Credentials are never shown: wherever the server or an operator command prints
a database URL, or an error or log line that may quote it, the URL's password
is masked. libpq quotes a malformed password back in its errors ("invalid
percent-encoded token"), so the password itself is masked wherever it appears,
not only the URL as written."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

MASK = "***"

_PASSWORD_PARAMETER = re.compile(r"[?&]password=([^&#]*)")


def _passwords(url: str) -> set[str]:
    """The password of `url` as written and decoded: from its user info and from
    a `password=` query parameter (libpq reads both)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return set()
    # The user info ends at the last "@" before the query: a password may hold "@" or "/".
    userinfo, at, _ = rest.partition("?")[0].rpartition("@")
    written = [userinfo.partition(":")[2]] if at else []
    written += _PASSWORD_PARAMETER.findall(rest)
    return {form for password in written for form in (password, unquote(password)) if form}


def redact(text: str, url: str | None) -> str:
    """`text` with the password of the database URL `url` masked (`url` may be None)."""
    if not url:
        return text
    # Longest first: a decoded password may be part of the form written in the URL.
    for password in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(password, MASK)
    return text


def redact_url(url: str) -> str:
    """`url` with its password masked, to print."""
    return redact(url, url)


class RedactingFormatter(logging.Formatter):
    """Formats log lines, tracebacks included, with the database URL's password masked."""

    def __init__(self, fmt: str, url: str | None):
        super().__init__(fmt)
        self._url = url

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._url)
