"""The outbound URL policy: every URL a tenant enters that the portal or the
gateway will call (Langfuse hosts, alert webhooks, provider `api_base`).

A tenant must not turn the portal into a probe of the network it runs in, so
only http(s) URLs without userinfo are accepted, and a host that is, or
resolves to, a loopback, link-local, private (RFC 1918, CGNAT, ULA),
unspecified, multicast, reserved or cloud metadata address is refused. IP
literals are read as the C resolver reads them (`2130706433`, `0x7f.1`,
`0177.0.0.1`) and IPv4 inside IPv6 (`::ffff:127.0.0.1`, NAT64) is unwrapped;
every DNS answer is checked, not only the first.

The platform may allow named ranges and host names with
`PORTAL_OUTBOUND_ALLOWED_NETWORKS` (`10.0.0.0/8,vllm.internal,.corp.example`:
a self-hosted vLLM on the company network is legitimate). Cloud metadata
addresses and names are refused even then.

Two moments: `check_url` when a URL is saved (a name that does not resolve
from here is accepted: it cannot be checked, and the call-time check refuses
it if it later points inside), and `PolicyTransport` when the portal calls:
it resolves once, checks every answer and connects to the checked address,
so a DNS answer that changes between the check and the connection
(rebinding) cannot reach inside. Callers do not follow redirects.

What counts as internal is defined once, for the portal and the gateway, in
gateway/plugin/addresses.py."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

from gateway.plugin.addresses import METADATA, METADATA_NAMES, IPAddress, classify, ip_literal, is_localhost

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(ValueError):
    """A URL the portal will not call. The message says why, in terms of what
    the tenant entered; it never carries the far side's answer."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, without brackets
    port: int


def parse(url: str) -> Target:
    """The scheme, host and port of an http(s) URL without userinfo."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise OutboundRefused("Expected an http(s) URL with a valid host and port.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("Expected an http(s) URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OutboundRefused("Enter the URL without a user name or password in it.")
    host = parts.hostname.lower().rstrip(".")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


@dataclass(frozen=True)
class Allowance:
    networks: tuple[Network, ...]
    names: frozenset[str]  # exact names, and suffixes starting with "."

    def allows_name(self, host: str) -> bool:
        return host in self.names or any(n.startswith(".") and host.endswith(n) for n in self.names)

    def allows_address(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            candidates.append(ip.ipv4_mapped)
        return any(c in n for c in candidates for n in self.networks if n.version == c.version)


@lru_cache(maxsize=8)
def _allowance(entries: tuple[str, ...]) -> Allowance:
    networks, names = [], set()
    for entry in (e.strip().lower() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.removeprefix("*"))
    return Allowance(tuple(networks), frozenset(names))


def allowance() -> Allowance:
    value = getattr(settings, "PORTAL_OUTBOUND_ALLOWED_NETWORKS", ()) or ()
    if isinstance(value, str):
        value = value.split(",")
    return _allowance(tuple(value))


def _resolve(target: Target) -> list[IPAddress]:
    if is_localhost(target.host):
        return [ipaddress.ip_address("127.0.0.1")]  # RFC 6761: always loopback, whatever DNS says
    infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


def _check_addresses(target: Target, addresses: Iterable[IPAddress], *, literal: bool) -> None:
    policy = allowance()
    named = not literal and policy.allows_name(target.host)
    for ip in addresses:
        reason = classify(ip)
        if reason is None or (reason != METADATA and (named or policy.allows_address(ip))):
            continue
        subject = f"{target.host} is" if literal else f"{target.host} resolves to"
        hint = "" if reason == METADATA else (" A platform admin can allow a network with "
                                              "PORTAL_OUTBOUND_ALLOWED_NETWORKS.")
        raise OutboundRefused(f"The portal does not connect to internal addresses: {subject} {reason}.{hint}")


def _addresses(target: Target, *, strict: bool) -> list[IPAddress] | None:
    """The checked addresses of a target; None when a name does not resolve
    and `strict` is off."""
    if target.host in METADATA_NAMES:
        raise OutboundRefused(f"The portal does not connect to internal addresses: {target.host} is {METADATA}.")
    literal = ip_literal(target.host)
    if literal is not None:
        _check_addresses(target, [literal], literal=True)
        return [literal]
    try:
        addresses = _resolve(target)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        if strict:
            raise OutboundRefused(f"The host {target.host} cannot be resolved.")
        return None
    _check_addresses(target, addresses, literal=False)
    return addresses


def check_url(url: str) -> Target:
    """The save-time check (see the module docstring)."""
    target = parse(url)
    _addresses(target, strict=False)
    return target


def connect_address(target: Target) -> IPAddress:
    """The call-time check: resolve once, check every answer, and return the
    address to connect to."""
    addresses = _addresses(target, strict=True)
    assert addresses  # strict: never None or empty
    return addresses[0]


def validate(field: str, url: str) -> str:
    """`check_url` for a form or API field: a ValidationError naming the field."""
    try:
        check_url(url)
    except OutboundRefused as exc:
        raise ValidationError({field: str(exc)}) from None
    return url


class PolicyTransport(httpx.BaseTransport):
    """An httpx transport that applies the policy to every request it sends
    and connects to the address it checked (TLS still verifies the name).
    Raises `OutboundRefused` instead of connecting."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        target = Target(url.scheme, url.host.lower(), url.port or (443 if url.scheme == "https" else 80))
        ip = connect_address(target)
        request.url = url.copy_with(host=str(ip))
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
