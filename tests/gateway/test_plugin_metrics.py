"""The plugin's metrics and request ids at the guard, in process (the real proxy: tests/e2e/test_gateway_metrics.py)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from gateway.plugin import guard, logs, metrics
from gateway.plugin.state import GatewayState
from tests.e2e.procs import free_port

MASTER = "sk-master-for-metrics-tests"


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"litellm-own")]})
    await send({"type": "http.response.body", "body": b"{}"})


def call(path: str, headers: list[tuple[bytes, bytes]], method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    asyncio.run(guard.Guard(ok_app)(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_scrape_needs_the_master_key_or_the_metrics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER)
    monkeypatch.setenv("PORTAL_GATEWAY_METRICS_TOKEN", "scraper-token")
    for headers in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"Bearer ")],
                    [(b"x-api-key", MASTER.encode())], [(b"authorization", b"Basic " + MASTER.encode())]):
        status, _, body = call(metrics.PATH, headers)
        assert status == 401 and b"portal_gateway" not in body, headers
    for token in (MASTER, "scraper-token"):
        status, sent, body = call(metrics.PATH, [(b"authorization", f"Bearer {token}".encode())])
        assert status == 200 and b"portal_gateway_requests_total" in body
        assert sent[b"content-type"].startswith(b"text/plain")
    monkeypatch.delenv("PORTAL_GATEWAY_METRICS_TOKEN")
    assert call(metrics.PATH, [(b"authorization", b"Bearer scraper-token")])[0] == 401


def test_every_answer_carries_the_request_id_and_is_counted() -> None:
    before = sample("portal_gateway_requests_total", endpoint="models", outcome="served", code="200")
    status, sent, _ = call("/v1/models", [(b"x-request-id", b"portal-1234.ab:cd_ef")])
    assert status == 200 and sent[b"x-request-id"] == b"portal-1234.ab:cd_ef"  # LiteLLM's own one replaced
    assert sample("portal_gateway_requests_total", endpoint="models", outcome="served", code="200") == before + 1
    for bad in (b"has space", b"x" * 129, b"", b"semi;colon", "é".encode()):
        _, sent, _ = call("/v1/models", [(b"x-request-id", bad)])
        assert sent[b"x-request-id"] != bad and len(sent[b"x-request-id"]) == 32
    refused = sample("portal_gateway_refusals_total", reason="route_not_found", code="404")
    status, sent, _ = call("/key/generate", [], method="POST")
    assert status == 404 and len(sent[b"x-request-id"]) == 32
    assert sample("portal_gateway_refusals_total", reason="route_not_found", code="404") == refused + 1
    assert logs.current.get() is None  # the request's context ends with it


@pytest.mark.parametrize(("status", "code", "reason"), [
    (401, "invalid_api_key", "unknown_key"), (401, "key_revoked", "revoked"), (401, "key_expired", "expired"),
    (403, "model_not_allowed", "model_not_allowed"), (400, "unsupported_field", "field_refused"),
    (400, "invalid_json", "field_refused"), (429, "budget_exceeded", "budget"),
    (429, "rate_limit_exceeded", "rate_limit"), (503, "gateway_unavailable", "unavailable"),
    (503, "contract_mismatch", "contract_mismatch"), (418, "made-up", "other")])
def test_refusal_reasons_are_a_fixed_set(status: int, code: str, reason: str) -> None:
    assert metrics.reason(status, code) == reason


def test_a_redis_error_is_counted_by_operation() -> None:
    before = sample("portal_gateway_redis_errors_total", operation="read")
    state = GatewayState(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises((redis.RedisError, OSError)):
        asyncio.run(state.doc("llmp:v1:nothing"))
    assert sample("portal_gateway_redis_errors_total", operation="read") == before + 1
