"""Which webhook URLs hookline can send to, and the reason given for the others."""

from __future__ import annotations

import pytest

from hookline.server.delivery import urls


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.com/hook", None),
        ("http://example.com:8080/a?b=c", None),
        ("https://bücher.example/", None),  # sent IDNA-encoded
        ("https://internal_host.example.com./", None),
        ("http://127.0.0.1:9000/", None),  # an address: the SSRF guard judges it
        ("http://0177.0.0.1/", None),
        ("http://[::1]:8080/", None),
        ("ftp://example.com/", "must be an http or https URL, not ftp:"),
        ("example.com/hook", "not a relative one"),
        ("https://user:pw@example.com/", "may not hold user info"),
        ("https://user@example.com/", "may not hold user info"),
        ("https://@example.com/", "may not hold user info"),
        ("https://example.com\\@evil.example/", "may not hold user info"),
        ("http://", "has no host"),
        ("http://:80/", "has no host"),
        ("https://example.com:0/", "has port 0"),
        ("https://example.com:65536/", "Port out of range"),
        ("https://example.com:http/", "Port could not be cast"),
        ("https://[::1/", "Invalid IPv6 URL"),
        ("https://example.com/#top", "may not have a fragment"),
        ("https://example.com/#", "may not have a fragment"),
        ("https://exa mple.com/", "white space"),
        ("https://example.com/a\tb", "white space"),
        ("https://example.com/\x00", "control characters"),
        ("https://exa\u200bmple.com/", "Invalid IDNA hostname"),
        ("https://xn--zz.example/", "Invalid A-label"),
        ("https://example..com/", "malformed host name"),
        ("https://exa%6dple.com/", "malformed host name"),
        ("https://" + "a" * 64 + ".com/", "malformed host name"),
        ("https://" + "a." * 127 + "com/", "DNS allows at most 253"),
    ],
)
def test_url_problems(url, reason):
    problem = urls.problem(url)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "url",
    ["https://u:hunter2pw@example.com/", "https://u:hunter2pw@example.com:99999/", "https://u:hunter2pw@[::1/"],
)
def test_a_password_is_never_in_the_reason(url):
    problem = urls.problem(url)
    assert problem and "hunter2pw" not in problem
