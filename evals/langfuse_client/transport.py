"""The HTTP connection to a tenant's Langfuse host, handed to the SDK as its httpx client.

Every request goes through the outbound URL policy (`portal.outbound.PolicyTransport`), redirects
are not followed, and an answer is read up to MAX_RESPONSE_BYTES (decoded: a compressed answer is
bounded by what it inflates to) before the SDK sees it. An answer other than 2xx never reaches the
SDK: it is raised as `FailedAnswer`, so the SDK's own error classes, which carry the far side's body
in their message, are never made, and what the far side said is ours to filter (`errors`)."""

from __future__ import annotations

import httpx

from portal.outbound import PolicyTransport

# The host is a tenant's: what it answers is bounded, so that it cannot hold a worker for ever
# or fill its memory (a real Langfuse pages 100 items at a time and answers far below this).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
USER_AGENT = "llmops-portal"
DECODED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class AnswerTooLarge(Exception):
    """The far side answered more than `limit` bytes to one request."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class FailedAnswer(Exception):
    """The far side answered with a status other than 2xx; `response` holds its (bounded) answer."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class BoundedTransport(httpx.BaseTransport):
    """Reads each answer whole, up to `max_bytes`, and raises `FailedAnswer` for one that is not 2xx."""

    def __init__(self, inner: httpx.BaseTransport, *, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.inner, self.max_bytes = inner, max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        streamed = self.inner.handle_request(request)
        streamed.request = request
        try:
            content = self._read(streamed)
        finally:
            streamed.close()
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in DECODED_HEADERS]
        response = httpx.Response(streamed.status_code, headers=headers, content=content, request=request)
        if not 200 <= response.status_code < 300:
            raise FailedAnswer(response)
        return response

    def _read(self, response: httpx.Response) -> bytes:
        chunks, size = [], 0
        for chunk in response.iter_bytes():  # decoded with the answer's Content-Encoding
            size += len(chunk)
            if size > self.max_bytes:
                raise AnswerTooLarge(self.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.inner.close()


def http_client(*, timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """The httpx client the SDK sends through: the policy, the bound, no redirects, a timeout on every
    phase of every request. `transport` replaces the network (tests)."""
    return httpx.Client(timeout=timeout, follow_redirects=False,
                        transport=BoundedTransport(PolicyTransport(transport)), headers={"User-Agent": USER_AGENT})
