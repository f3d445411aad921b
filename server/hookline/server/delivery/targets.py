"""Which addresses a webhook may target: globally routable ones, or those an
operator allowed with --allow-target CIDR.

This module judges addresses; CreateWebhook/UpdateWebhook use it to refuse
literal non-global addresses up front, and the delivery transport to refuse
every address a host resolves to at send time."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
_NOT_GLOBAL = "is not a globally routable address; an operator can allow it with --allow-target CIDR"


class TargetRefused(Exception):
    """A send refused by the SSRF guard: the host is, or resolves to, an address
    that may not be targeted. Final: the delivery is not retried."""

    def __init__(self, host: str, address: IPAddress):
        self.host = host
        self.address = address
        bare = host.strip("[]")
        if literal_address(host) is None:
            message = f"{host} resolves to {address}, which {_NOT_GLOBAL}"
        elif _standard_notation(bare):
            message = f"{bare} {_NOT_GLOBAL}"
        else:  # a legacy IPv4 spelling: say which address it is
            message = f"{host} means {address}, which {_NOT_GLOBAL}"
        super().__init__(message)


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as error:
            raise ValueError(f"--allow-target {cidr!r} is not a CIDR such as 127.0.0.0/8: {error}") from None
    return networks


# Every send checks its host (and every connection its addresses): the answers
# depend on the host and the allow-list alone, so the last ones seen are remembered.
@lru_cache(maxsize=4096)
def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally, in any form a resolver accepts
    (bracketed IPv6, dotted, integer, octal or hex IPv4); None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _standard_notation(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside mapped, 6to4, NAT64 and IPv4-compatible forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def permitted(address: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    """Whether `address` may be targeted: it is global, or an allowed network covers it."""
    return _permitted(address, tuple(allowed))


@lru_cache(maxsize=4096)
def _permitted(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> bool:
    if any(address.version == net.version and address in net for net in allowed):
        return True
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None and any(net.version == 4 and inner in net for net in allowed):
        return True
    return address.is_global and not address.is_multicast and (inner is None or inner.is_global)


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why `address` may not be targeted, or None when it may."""
    return None if permitted(address, allowed) else f"{address} {_NOT_GLOBAL}"


def check_resolved(host: str, addresses: Iterable[str], allowed: Sequence[IPNetwork]) -> None:
    """Raise TargetRefused unless every address `host` resolved to may be targeted.

    One bad address refuses them all: a connection may go to any of them."""
    for text in addresses:
        address = literal_address(text)
        if address is None:
            raise OSError(f"{host} resolved to {text!r}, which is not an IP address")
        if not permitted(address, allowed):
            raise TargetRefused(host, address)


def check_literal(host: str, allowed: Sequence[IPNetwork]) -> IPAddress | None:
    """The address `host` spells literally (None for a name); raises TargetRefused
    if that address may not be targeted. Resolvers are skipped for literal
    addresses, so these need their own check."""
    address = literal_address(host)
    if address is not None and not permitted(address, allowed):
        raise TargetRefused(host, address)
    return address


def check_url(url: str, allowed: Sequence[IPNetwork]) -> None:
    """check_literal on a URL's host, read as urlsplit reads it: that accepts
    spellings (octal, integer) that stricter URL parsers reject."""
    host = _url_host(url)
    if host:
        check_literal(host, allowed)


@lru_cache(maxsize=4096)
def _url_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None  # no request can be made to it either


def refused_in(error: BaseException) -> TargetRefused | None:
    """The TargetRefused behind `error`, through any wrapping HTTP libraries did."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TargetRefused):
            return current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None
