"""Which addresses a webhook may target: globally routable ones, or those an
operator allowed with --allow-target CIDR.

This module judges addresses; CreateWebhook/UpdateWebhook use it to refuse
literal non-global addresses up front."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as error:
            raise ValueError(f"--allow-target {cidr!r} is not a CIDR such as 127.0.0.0/8: {error}") from None
    return networks


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells literally, in any form a resolver accepts
    (bracketed IPv6, dotted, integer, octal or hex IPv4); None for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_V4.match(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside mapped, 6to4, NAT64 and IPv4-compatible forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why `address` may not be targeted, or None when it may."""
    if any(address.version == net.version and address in net for net in allowed):
        return None
    inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if inner is not None and any(net.version == 4 and inner in net for net in allowed):
        return None
    if not address.is_global or address.is_multicast or (inner is not None and not inner.is_global):
        return f"{address} is not a globally routable address; an operator can allow it with --allow-target CIDR"
    return None
