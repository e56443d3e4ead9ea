"""Which hosts and addresses are internal: the one definition the portal's
outbound URL policy (portal/outbound.py) and the gateway's check of the URLs
LiteLLM downloads (gateway/plugin/urls.py) share.

An address is internal when it is a loopback, link-local, private (RFC 1918,
CGNAT, ULA), unspecified, multicast, reserved or cloud metadata address,
also when it is wrapped in IPv6 (`::ffff:127.0.0.1`, 6to4, NAT64). IP
literals are read as the C resolver reads them (`2130706433`, `0x7f.1`,
`0177.0.0.1`). A name is internal when it is `localhost` (RFC 6761: always
loopback) or a cloud metadata name. Standard library only: the plugin runs in
the stock LiteLLM image."""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    "169.254.170.2",  # AWS ECS task metadata
    "169.254.169.253",  # AWS DNS
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure wire server (a public address)
))
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.com", "metadata.tencentyun.com",
})
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA = "a cloud metadata address"
_IPV4_SPELLING = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


def is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names by itself, in any spelling a resolver accepts."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if not _IPV4_SPELLING.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def classify(ip: IPAddress) -> str | None:
    """Why `ip` is internal (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None:
            return classify(embedded)
    checks = (
        (ip in METADATA_ADDRESSES, METADATA),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip in CGNAT, "a shared (CGNAT) address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved or not ip.is_global, "a reserved address"),
    )
    return next((reason for refused, reason in checks if refused), None)
