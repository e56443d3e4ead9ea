"""The gateway's Prometheus metrics, served at `GET /portal/metrics` by the guard.

- `portal_gateway_requests_total{endpoint, outcome, code}`: every request the
  guard sees; endpoint is the API (`chat`, `completions`, `embeddings`,
  `responses`, `messages`, `models`, `model_info`, `other`), outcome `served`
  (2xx), `refused` (answered by the gateway itself), `failed` (admitted, then
  an error from LiteLLM or the provider) or `aborted` (the client left first).
- `portal_gateway_refusals_total{reason, code}`: each refusal by its reason
  (`unknown_key`, `revoked`, `budget`, `rate_limit`, `field_refused`, ...).
- `portal_gateway_reservation_seconds`, `portal_gateway_settlement_seconds`:
  the Redis round trips of the RESERVE and SETTLE scripts.
- `portal_gateway_redis_errors_total{operation}`.

No label names a tenant (organization, key, route name): each has a small
fixed set of values. With PROMETHEUS_MULTIPROC_DIR set (`manage.py gateway`
sets it; compose gives the gateway one) every LiteLLM worker writes its
numbers there and the route sums them, so one scrape gives the whole proxy.

prometheus_client ships in the stock LiteLLM image but not with
`litellm[proxy]`: without it every call here does nothing and the route
answers 503. Standard library (and prometheus_client, when present) only: this runs inside the stock LiteLLM proxy."""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from gateway.plugin import logs

PATH = "/portal/metrics"
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)  # before prometheus_client writes its first file there

try:
    import prometheus_client as prom
except ImportError:  # litellm[proxy] without the image's extras: metrics off, the proxy serves as ever
    prom = None  # type: ignore[assignment]

# Refusal codes the plugin sends (auth.fail, the guard's Refusals) -> the reason label.
REASONS = {
    "no_key": "no_key", "invalid_api_key": "unknown_key", "key_revoked": "revoked", "key_rotated": "rotated",
    "key_expired": "expired", "key_blocked": "blocked", "model_required": "model_required",
    "model_not_allowed": "model_not_allowed", "model_not_found": "model_not_found",
    "budget_exceeded": "budget", "rate_limit_exceeded": "rate_limit", "request_too_large": "too_large",
    "gateway_state_loading": "unavailable", "gateway_unavailable": "unavailable", "gateway_error": "unavailable",
    "gateway_not_installed": "not_installed", "route_not_allowed": "route_not_allowed",
    "route_not_found": "route_not_found", "method_not_allowed": "method_not_allowed",
    "master_key_not_allowed": "master_key_not_allowed", "contract_mismatch": "contract_mismatch",
}
OPERATIONS = frozenset({"read", "reserve", "settle", "release", "held_estimate", "events", "models", "script"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def reason(status: int, code: str) -> str:
    known = REASONS.get(code)
    if known is not None:
        return known
    return "field_refused" if status == 400 else "other"  # the body policy's codes are many; all are 400


class _Metrics:
    def __init__(self) -> None:
        assert prom is not None
        self.requests = prom.Counter("portal_gateway_requests", "Requests the gateway answered.",
                                     ["endpoint", "outcome", "code"])
        self.refusals = prom.Counter("portal_gateway_refusals", "Requests the gateway refused, by reason.",
                                     ["reason", "code"])
        self.reservation = prom.Histogram("portal_gateway_reservation_seconds",
                                          "Redis round trip of a request's reservation (RESERVE script).",
                                          buckets=LATENCY_BUCKETS)
        self.settlement = prom.Histogram("portal_gateway_settlement_seconds",
                                         "Redis round trip of a request's settlement (SETTLE script).",
                                         buckets=LATENCY_BUCKETS)
        self.redis_errors = prom.Counter("portal_gateway_redis_errors", "Errors of the gateway's state store.",
                                         ["operation"])
        self.children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """The labelled child, kept: `labels()` takes a lock and builds a key on every call."""
        key = (id(metric), *labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found


_metrics = _Metrics() if prom is not None else None


# The statuses a `code` label names; any other is its class (`4xx`, `5xx`...): LiteLLM passes an upstream's
# status through, and a tenant's own endpoint (an openai_compatible api_base) may answer any of 100-999,
# each of which would otherwise be a new series for as long as the proxy runs.
CODES = frozenset({200, 201, 204, 400, 401, 402, 403, 404, 405, 408, 409, 413, 415, 422, 429, 499, 500, 501, 502,
                   503, 504})


def code_label(status: int) -> str:
    if status in CODES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def request(endpoint: str, outcome: str, status: int) -> None:
    if _metrics is not None:
        _metrics.child(_metrics.requests, endpoint, outcome, code_label(status)).inc()


def refused(status: int, code: str) -> None:
    """One refusal the gateway answered itself (call it once, where the refusal is made); its reason also
    goes on the request's access line."""
    why = reason(status, code)
    ctx = logs.current.get()
    if ctx is not None:
        ctx.reason = why
    if _metrics is not None:
        _metrics.child(_metrics.refusals, why, code_label(status)).inc()


def redis_error(operation: str) -> None:
    if _metrics is not None:
        _metrics.child(_metrics.redis_errors, operation if operation in OPERATIONS else "script").inc()


def reserved(seconds: float) -> None:
    if _metrics is not None:
        _metrics.reservation.observe(seconds)


def settled(seconds: float) -> None:
    if _metrics is not None:
        _metrics.settlement.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets: every worker's numbers when PROMETHEUS_MULTIPROC_DIR is set."""
    assert prom is not None
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
    return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST


def authorized(headers: list[tuple[bytes, bytes]]) -> bool:
    """The master key, or PORTAL_GATEWAY_METRICS_TOKEN (a scraper's own token), as a bearer token."""
    tokens = [t for t in (os.environ.get("LITELLM_MASTER_KEY", ""), os.environ.get("PORTAL_GATEWAY_METRICS_TOKEN", ""))
              if t]
    for name, value in headers:
        if name.lower() == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                given = text[7:].strip().encode("latin-1", "replace")
                return any(hmac.compare_digest(given, t.encode("latin-1", "replace")) for t in tokens)
    return False


async def serve(scope: Any, send: Any) -> tuple[int, str]:
    """Answer a scrape; (status, refusal code or '')."""
    if scope.get("method") not in ("GET", "HEAD"):
        return await _plain(send, 405, b"Use GET.\n"), "method_not_allowed"
    if not authorized(scope.get("headers", [])):
        return await _plain(send, 401, b"Send the master key or PORTAL_GATEWAY_METRICS_TOKEN as a bearer token.\n",
                            [(b"www-authenticate", b"Bearer")]), "invalid_api_key"
    if prom is None:
        return await _plain(send, 503, b"prometheus_client is not installed in this proxy.\n"), "metrics_unavailable"
    body, content_type = await asyncio.to_thread(exposition)  # reads every worker's files: off the event loop
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})
    return 200, ""


async def _plain(send: Any, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *(extra or [])]})
    await send({"type": "http.response.body", "body": text})
    return status
