"""URLs in a request's content that LiteLLM fetches itself, from the gateway's host.

For providers that take no image or file URL (Anthropic, Bedrock, Vertex AI, Ollama...), LiteLLM
downloads `image_url`, `input_image`, `file_url` and Anthropic `source.url` and sends the bytes on:
a tenant could make the gateway call its own network (cloud metadata, Redis, the portal). So a URL
there must be `data:` or http(s) to a host that is not, in any spelling, a loopback, private,
link-local, reserved or metadata address, nor `localhost`. Checked without DNS (the guard must not
block on it): a name that resolves inside is the platform's to keep off the gateway's network.
Standard library only."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.com"})
_IPV4_SPELLING = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not _IPV4_SPELLING.match(host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # 2130706433, 0x7f.1, 0177.0.0.1
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def refused(url: str) -> str | None:
    """Why the gateway does not let LiteLLM fetch `url` (None: it may)."""
    if url[:5].lower() == "data:":
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "only data: and http(s) URLs are accepted"
    if parts.username is not None or parts.password is not None:
        return "it holds a user name or password"
    if host == "localhost" or host.endswith(".localhost") or host in METADATA_NAMES:
        return f"{host} is an internal name"
    ip = _address(host)
    if ip is not None and not ip.is_global:
        return f"{host} is not a public address"
    return None
