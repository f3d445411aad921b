"""What a webhook URL must look like for hookline to send to it: http or https,
a host name that resolves or a literal address, no user info, no fragment.

CreateWebhook and UpdateWebhook refuse any other URL; the delivery worker records
the same reason on each attempt to a URL stored by an older server that took it.
User info is refused rather than sent as Basic credentials (as Svix and GitHub
do): a header says it plainly, and the URL then holds no password to show."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

from . import targets

_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_MAX_HOST = 253  # DNS's limit on a name, without its final dot


@lru_cache(maxsize=4096)
def problem(url: str) -> str | None:
    """Why hookline cannot send to `url`, phrased to follow the URL's field name
    ("webhook.url has no host"); None when it can. Never quotes user info."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as error:
        return f"is not a valid URL: {error}"
    if parts.scheme not in ("http", "https"):
        return f"must be an http or https URL, not {parts.scheme + ':' if parts.scheme else 'a relative one'}"
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        return "may not contain white space or control characters"
    if "@" in parts.netloc:
        return (
            "may not hold user info (user:password@ before the host), which hookline does not send: "
            "put the credentials in a header instead, such as Authorization"
        )
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0, which nothing listens on; use a port from 1 to 65535"
    if "#" in url:
        return "may not have a fragment (#...): it is never sent to the receiver"
    if targets.literal_address(parts.hostname) is not None:
        return None  # an address, in any spelling: targets judges it
    try:
        # The parser the delivery worker sends with; it encodes international names
        # (IDNA), and decodes xn-- labels when asked for .host, as the sending does.
        parsed = httpx.URL(url)
        _ = parsed.host
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError) as error:  # idna's errors are ValueErrors
        return f"is not a valid URL: {error}"
    return _host_name_problem(host)


def _host_name_problem(host: str) -> str | None:
    name = host.removesuffix(".")
    if len(name) > _MAX_HOST:
        return f"has a host name of {len(name)} characters; DNS allows at most {_MAX_HOST}"
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "has a malformed host name: each dot-separated part must be 1 to 63 letters, digits, '-' or '_'"
    return None
