"""The gateway's metrics and logs, through a real LiteLLM proxy with the plugin (two workers, JSON_LOGS):
`GET /portal/metrics` counts served and refused requests (by reason), times reservations and
settlements, sums both workers and is closed to everyone but the master key and the metrics token;
every answer carries the request's id, which is on the proxy's log lines."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Stack
from tests.e2e.helpers import issue_key, until
from tests.e2e.procs import LOGS, Gateway
from tests.factories import Tenant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "metrics-" + secrets.token_hex(12)
MASTER = "sk-master-" + secrets.token_hex(12)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def gateway(e2e_stack: Stack) -> Iterator[Gateway]:
    # A busy machine starts a worker in more than uvicorn's 5 s health check: it would restart it forever.
    env = {**e2e_stack.env, "JSON_LOGS": "true", "PORTAL_GATEWAY_METRICS_TOKEN": TOKEN, "LITELLM_MASTER_KEY": MASTER,
           "TIMEOUT_WORKER_HEALTHCHECK": "180"}
    # Its own directory, not pytest's: another session's pytest may prune those while the proxy runs.
    directory = Path(tempfile.mkdtemp(prefix="gw-metrics-"))
    gw = Gateway(env, directory)
    gw.argv += ["--workers", "2"]
    try:
        gw.start()
        gw.wait_ready(timeout=300)
        yield gw
    finally:
        gw.stop()
        shutil.rmtree(directory, ignore_errors=True)


def log_of(gw: Gateway) -> Path:
    return LOGS / f"{gw.name}.log"


def scrape(gw: Gateway, token: str = TOKEN) -> Samples:
    response = httpx.get(f"{gw.url}/portal/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(gw: Gateway, key: str | None, model: str = "chat", headers: dict[str, str] | None = None,
         **fields: Any) -> httpx.Response:
    sent = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}], **fields}
    with httpx.Client(timeout=30) as fresh:  # a new connection each time: the two workers share the requests
        return fresh.post(f"{gw.url}/v1/chat/completions", json=body, headers=sent)


def refusals(after: Samples, before: Samples, reason: str, code: int) -> float:
    name = "portal_gateway_refusals_total"
    return value(after, name, reason=reason, code=str(code)) - value(before, name, reason=reason, code=str(code))


def requests(after: Samples, before: Samples, outcome: str, code: int, endpoint: str = "chat") -> float:
    labels = {"endpoint": endpoint, "outcome": outcome, "code": str(code)}
    return value(after, "portal_gateway_requests_total", **labels) - \
        value(before, "portal_gateway_requests_total", **labels)


def priced_route(t: Tenant) -> None:
    response = t.client("admin").post(t.url("routes/"), {
        "name": "priced", "input_cost_per_million": 1000, "output_cost_per_million": 2000,
        "deployments": [{"model": "gpt-4o-mini", "litellm_params": {"mock_response": "a priced answer"}}]},
        format="json")
    assert response.status_code == 201


def test_served_and_refused_requests_move_the_counters(stack: Stack, gateway: Gateway, acme: Tenant) -> None:
    priced_route(acme)
    limited = issue_key(acme, allowed_routes=["chat"], rpm_limit=1)
    until(lambda: post(gateway, limited["key"]).status_code == 200, 5, 0.2)  # the proxy knows the key
    before = scrape(gateway)

    assert post(gateway, limited["key"]).status_code == 429  # rpm 1: the next one in this minute
    assert post(gateway, "sk-no-such-key").status_code == 401
    assert post(gateway, None).status_code == 401
    assert post(gateway, limited["key"], model="priced").status_code == 403
    assert post(gateway, limited["key"], api_base="http://elsewhere").status_code == 400  # a proxy control field
    broke = issue_key(acme, allowed_routes=["priced"], max_budget="0.0001")
    budget = until(lambda: post(gateway, broke["key"], model="priced").status_code == 429, 5, 0.2)
    served_key = issue_key(acme, max_budget="10")
    until(lambda: post(gateway, served_key["key"]).status_code == 200, 5, 0.2)
    revoked = issue_key(acme)
    assert acme.client("owner").post(acme.url(f"keys/{revoked['id']}/revoke/")).status_code == 200
    until(lambda: post(gateway, revoked["key"]).status_code == 401, 5, 0.05)
    expiring = issue_key(acme, expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat())
    until(lambda: post(gateway, expiring["key"]).status_code == 401, 5, 0.2)

    after = scrape(gateway)
    assert refusals(after, before, "rate_limit", 429) == 1
    assert refusals(after, before, "unknown_key", 401) >= 1  # + a new key's first tries, before the push lands
    assert refusals(after, before, "no_key", 401) == 1
    assert refusals(after, before, "model_not_allowed", 403) == 1
    assert refusals(after, before, "field_refused", 400) == 1
    assert refusals(after, before, "budget", 429) == 1 and budget < 5
    assert refusals(after, before, "revoked", 401) == 1
    assert refusals(after, before, "expired", 401) == 1
    assert requests(after, before, "served", 200) >= 1
    assert requests(after, before, "refused", 429) >= 2 and requests(after, before, "refused", 403) == 1
    # The served request reserved against its budget, and its settlement (after the answer) is timed too.
    reserved = value(after, "portal_gateway_reservation_seconds_count") - \
        value(before, "portal_gateway_reservation_seconds_count")
    assert reserved >= 1
    until(lambda: value(scrape(gateway), "portal_gateway_settlement_seconds_count")
          > value(before, "portal_gateway_settlement_seconds_count"), 5, 0.2)
    assert value(after, "portal_gateway_redis_errors_total", operation="read") == 0


def test_every_worker_is_counted_in_one_scrape(stack: Stack, gateway: Gateway, acme: Tenant) -> None:
    key = issue_key(acme)
    until(lambda: post(gateway, key["key"]).status_code == 200, 5, 0.2)
    before = scrape(gateway)
    batch = uuid.uuid4().hex[:12]
    for i in range(20):
        assert post(gateway, key["key"], headers={"X-Request-ID": f"{batch}-{i}"}).status_code == 200
    # Each scrape is answered by one worker or the other, and each has the two workers' numbers.
    for _ in range(4):
        assert requests(scrape(gateway), before, "served", 200) == 20
    until(lambda: len(access_lines(gateway, batch)) >= 20, 5, 0.1)
    pids = {line["process"] for line in access_lines(gateway, batch) if line["logger"] == "portal.gateway.access"}
    assert len(pids) == 2, "the requests were not spread over the two workers: the test proves nothing"


def test_the_metrics_route_is_closed_to_everyone_else(stack: Stack, gateway: Gateway, acme: Tenant) -> None:
    key = issue_key(acme)
    until(lambda: post(gateway, key["key"]).status_code == 200, 5, 0.2)
    url = f"{gateway.url}/portal/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key['key']}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"x-api-key": MASTER}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert "portal_gateway" not in response.text
    assert httpx.post(url, headers={"Authorization": f"Bearer {MASTER}"}).status_code == 405
    assert "portal_gateway_requests_total" in httpx.get(url, headers={"Authorization": f"Bearer {MASTER}"}).text
    assert scrape(gateway, TOKEN)
    # LiteLLM's own metrics route is not reachable, with a key or without
    assert httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 404


def access_line_of(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    """The plugin's access line(s) of a request: uvicorn's own line (same id) comes a moment before it."""
    return [x for x in access_lines(gw, request_id) if x["logger"] == "portal.gateway.access"]


def access_lines(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    found = []
    for line in log_of(gw).read_text(errors="replace").splitlines():
        if request_id in line and line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if str(parsed.get("request_id", "")).startswith(request_id):
                found.append(parsed)
    return found


def test_the_request_id_is_returned_and_on_the_proxys_log_lines(stack: Stack, gateway: Gateway,
                                                                 acme: Tenant) -> None:
    key = issue_key(acme)
    until(lambda: post(gateway, key["key"]).status_code == 200, 5, 0.2)
    mine = f"portal-{uuid.uuid4().hex}"
    response = post(gateway, key["key"], headers={"X-Request-ID": mine})
    assert response.status_code == 200 and response.headers["x-request-id"] == mine
    until(lambda: access_line_of(gateway, mine), 5, 0.1)
    [line] = access_line_of(gateway, mine)
    assert line["request_id"] == mine and line["status"] == 200 and line["outcome"] == "served"
    assert line["path"] == "/v1/chat/completions" and line["level"] == "INFO"

    refused_id = f"refused-{uuid.uuid4().hex}"
    response = post(gateway, "sk-no-such-key", headers={"X-Request-ID": refused_id})
    assert response.status_code == 401 and response.headers["x-request-id"] == refused_id
    until(lambda: access_line_of(gateway, refused_id), 5, 0.1)
    [line] = access_line_of(gateway, refused_id)
    assert (line["status"], line["outcome"], line["reason"]) == (401, "refused", "unknown_key")

    # A malformed id (spaces, newlines: log forging) is replaced by a fresh one, never echoed.
    response = post(gateway, key["key"], headers={"X-Request-ID": "bad id"})
    generated = response.headers["x-request-id"]
    assert generated != "bad id" and len(generated) == 32 and int(generated, 16) >= 0
    until(lambda: access_line_of(gateway, generated), 5, 0.1)
    # No key plaintext on any line of the proxy's log.
    assert key["key"] not in log_of(gateway).read_text(errors="replace")
