"""URLs in a request's content that LiteLLM fetches itself, from the gateway's host.

For providers that take no image or file URL (Anthropic, Bedrock, Vertex AI, Ollama...), LiteLLM
downloads `image_url`, `input_image`, `file_url` and Anthropic `source.url` and sends the bytes on:
a tenant could make the gateway call its own network (cloud metadata, Redis, the portal). So a URL
there must be `data:` or http(s) to a host that is not, in any spelling, a loopback, private,
link-local, reserved or metadata address, nor `localhost`. Checked without DNS (the guard must not
block on it): a name that resolves inside is the platform's to keep off the gateway's network.
What is internal: gateway/plugin/addresses.py, which the portal's outbound policy shares.
Standard library only."""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.plugin.addresses import METADATA_NAMES, classify, ip_literal, is_localhost


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
    if is_localhost(host) or host in METADATA_NAMES:
        return f"{host} is an internal name"
    ip = ip_literal(host)
    if ip is not None and classify(ip) is not None:
        return f"{host} is not a public address"
    return None
