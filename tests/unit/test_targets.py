from __future__ import annotations

import ipaddress

import pytest

from hookline.server.delivery.targets import literal_address, parse_networks, refusal

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fd00::1",
    "fe80::1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "2002:a00:1::",
]


@pytest.mark.parametrize("host", REFUSED)
def test_non_global_addresses_are_refused(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert "not a globally routable address" in (refusal(address, []) or "")


@pytest.mark.parametrize("host", ["8.8.8.8", "2606:4700::1111", "[2606:4700::1111]"])
def test_global_addresses_are_accepted(host: str) -> None:
    address = literal_address(host)
    assert address is not None and refusal(address, []) is None


@pytest.mark.parametrize(
    ("spelling", "address"),
    [("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("[::1]", "::1")],
)
def test_other_spellings_are_read_as_the_resolver_reads_them(spelling: str, address: str) -> None:
    assert literal_address(spelling) == ipaddress.ip_address(address)


def test_names_are_not_literals() -> None:
    assert literal_address("example.com") is None
    assert literal_address("1.example") is None


def test_allow_list_covers_plain_and_mapped_forms() -> None:
    allowed = parse_networks(["127.0.0.0/8"])
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allowed) is not None


def test_a_bad_cidr_is_named() -> None:
    with pytest.raises(ValueError, match="not-a-cidr"):
        parse_networks(["not-a-cidr"])
