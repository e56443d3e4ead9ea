"""The Langfuse client's policy over the SDK: what is retried and what is sent once, redirects,
the outbound policy, bounded listings, escaped path parameters, and the API generation of each
call, against the Langfuse stand-in (requests counted there) or a fake transport."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from evals.langfuse_client import MAX_CONFIG_PAGES, LangfuseClient, LangfuseError
from tests.langfuse_standin import LangfuseStandin
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY

ORG_PUBLIC, ORG_SECRET = "pk-lf-org", "sk-lf-org"
PUBLIC_HOST = "https://93.184.216.34"  # a public address: the fake transport answers in its place


def client_of(server: LangfuseStandin, public_key: str = PUBLIC_KEY, secret_key: str = SECRET_KEY
              ) -> LangfuseClient:
    return LangfuseClient(server.url, public_key, secret_key, backoff=0.01, max_backoff=0.05, timeout=5)


def sent(server: LangfuseStandin, method: str, path: str) -> int:
    return sum(1 for r in server.requests if r["method"] == method and r["path"].split("?")[0] == path)


def fake(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[LangfuseClient, list[httpx.Request]]:
    """A client whose far side is `answer`, through the outbound policy like any host."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    client = LangfuseClient(PUBLIC_HOST, "pk", "sk", transport=httpx.MockTransport(handler), backoff=0.01,
                            max_backoff=0.05)
    return client, seen


# Sent once: a POST that is not idempotent ----------------------------------------------------------

NOT_IDEMPOTENT: dict[str, tuple[str, Callable[[LangfuseClient], Any]]] = {
    "dataset run item": ("/api/public/dataset-run-items", lambda c: c.create_dataset_run_item(
        {"runName": "r", "datasetItemId": "i1", "traceId": "t1"})),
    "score config": ("/api/public/score-configs", lambda c: c.score_config("helpfulness", "NUMERIC")),
    "score without id": ("/api/public/scores", lambda c: c.create_score(
        {"traceId": "t1", "name": "helpfulness", "value": 0.5, "dataType": "NUMERIC"})),
    "project": ("/api/public/projects", lambda c: c.create_project("acme-new")),
    "project API key": ("/api/public/projects/p1/apiKeys", lambda c: c.create_project_api_key("p1", "portal")),
}


@pytest.mark.parametrize("call", list(NOT_IDEMPOTENT))
def test_a_post_that_is_not_idempotent_is_sent_once_when_answered_503(langfuse_standin: LangfuseStandin,
                                                                      call: str) -> None:
    """A 503 may come after Langfuse acted (a proxy that gave up waiting): sending again could make a
    second run item, config, score, project or key."""
    path, send = NOT_IDEMPOTENT[call]
    langfuse_standin.set_org_key(ORG_PUBLIC, ORG_SECRET, entitled=True)
    client = client_of(langfuse_standin, *((ORG_PUBLIC, ORG_SECRET) if "project" in call else ()))
    langfuse_standin.inject("POST", f"^{path}$", status=503, times=5, retry_after=None)
    with pytest.raises(LangfuseError) as failed:
        send(client)
    assert failed.value.status == 503 and not failed.value.permanent
    assert sent(langfuse_standin, "POST", path) == 1 and client.retries == 0


def test_a_post_that_never_left_or_was_refused_with_429_is_sent_again() -> None:
    """No connection, or 429 (refused before any work): sending again cannot do anything twice."""
    config = {"id": "c1", "name": "helpfulness", "dataType": "NUMERIC", "isArchived": False, "projectId": "p1",
              "createdAt": "2026-12-01T00:00:00.000Z", "updatedAt": "2026-12-01T00:00:00.000Z"}
    posts = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "GET":
            return httpx.Response(200, json={"data": [], "meta": {"page": 1, "limit": 100, "totalItems": 0,
                                                                  "totalPages": 0}})
        posts += 1
        if posts == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if posts == 2:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(200, json=config)

    client, _ = fake(answer)
    assert client.score_config("helpfulness", "NUMERIC")["id"] == "c1"
    assert posts == 3 and client.retries == 2


# Retried: reads and upserts by id -------------------------------------------------------------------

IDEMPOTENT: dict[str, tuple[str, str, Callable[[LangfuseClient], Any]]] = {
    "traces": ("GET", "/api/public/traces", lambda c: list(c.traces())),
    "dataset": ("GET", "/api/public/v2/datasets/qa", lambda c: c.dataset("qa")),
    "score with id": ("POST", "/api/public/scores", lambda c: c.create_score(
        {"id": "s1", "traceId": "t1", "name": "helpfulness", "value": 0.5, "dataType": "NUMERIC"})),
    "dataset item with id": ("POST", "/api/public/dataset-items", lambda c: c.upsert_dataset_item(
        {"datasetName": "qa", "id": "i1", "input": "question"})),
    "dataset (upserted by name)": ("POST", "/api/public/v2/datasets", lambda c: c.create_dataset("qa")),
}


@pytest.mark.parametrize("call", list(IDEMPOTENT))
def test_reads_and_upserts_answered_503_then_200_are_retried(langfuse_standin: LangfuseStandin, call: str) -> None:
    method, path, send = IDEMPOTENT[call]
    client = client_of(langfuse_standin)
    if call != "dataset (upserted by name)":
        client.create_dataset("qa")
    langfuse_standin.seed_traces("p1", 2)
    langfuse_standin.inject(method, f"^{path}$", status=503, times=1, retry_after=None)
    send(client)
    assert sent(langfuse_standin, method, path) == 2 and client.retries == 1


# Redirects and the outbound policy ------------------------------------------------------------------

CALLS: dict[str, Callable[[LangfuseClient], Any]] = {
    "health": lambda c: c.server(),
    "listing": lambda c: list(c.score_configs()),
    "upsert": lambda c: c.create_dataset("qa"),
    "create": lambda c: c.create_dataset_run_item({"runName": "r", "datasetItemId": "i1"}),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_redirect_is_not_followed(call: str) -> None:
    client, seen = fake(lambda r: httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"}))
    with pytest.raises(LangfuseError, match="redirect") as refused:
        CALLS[call](client)
    assert refused.value.permanent
    assert [r.url.host for r in seen] == ["93.184.216.34"]  # one request, to the host; the redirect not taken


@pytest.mark.parametrize("call", list(CALLS))
def test_an_internal_address_is_refused_before_any_request(settings: Any, langfuse_standin: LangfuseStandin,
                                                          call: str) -> None:
    settings.PORTAL_OUTBOUND_ALLOWED_NETWORKS = []  # production's default: the stand-in is on loopback
    with pytest.raises(LangfuseError, match="loopback") as refused:
        CALLS[call](client_of(langfuse_standin))
    assert refused.value.permanent and langfuse_standin.requests == []


def test_errors_do_not_repeat_what_the_far_side_answered() -> None:
    page = b"<html>internal admin console: secret-token-123</html>"
    client, _ = fake(lambda r: httpx.Response(500, content=page))
    with pytest.raises(LangfuseError) as failed:
        client.create_dataset_run_item({"runName": "r", "datasetItemId": "i1"})
    assert str(failed.value) == "Langfuse answered 500." and "secret" not in repr(failed.value.__dict__)


# Bounds and path parameters -------------------------------------------------------------------------


def test_a_listing_whose_pages_never_end_stops_at_its_bound() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        config = {"id": f"c{page}", "name": "other", "dataType": "NUMERIC", "isArchived": False, "projectId": "p1",
                  "createdAt": "2026-12-01T00:00:00.000Z", "updatedAt": "2026-12-01T00:00:00.000Z"}
        return httpx.Response(200, json={"data": [config], "meta": {"page": page, "limit": 100,
                                                                    "totalItems": 10**11, "totalPages": 10**9}})

    client, seen = fake(answer)
    with pytest.raises(LangfuseError, match=f"more than {MAX_CONFIG_PAGES} pages"):
        client.score_config("helpfulness", "NUMERIC")
    assert len(seen) == MAX_CONFIG_PAGES


def test_a_path_parameter_is_one_segment_whatever_it_holds(langfuse_standin: LangfuseStandin) -> None:
    """The SDK puts path parameters into the path as they are: a dataset named '../projects' would
    have read GET /api/public/projects."""
    client = client_of(langfuse_standin)
    client.create_dataset("a/b?c")
    assert client.dataset("a/b?c")["name"] == "a/b?c"
    assert client.dataset("../projects") is None and client.dataset("..") is None
    paths = [r["path"] for r in langfuse_standin.requests if r["method"] == "GET"]
    assert "/api/public/v2/datasets/a%2Fb%3Fc" in paths and "/api/public/v2/datasets/..%2Fprojects" in paths
    assert "/api/public/v2/datasets/%2E%2E" in paths
    assert sent(langfuse_standin, "GET", "/api/public/projects") == 0


# The API generation of each call --------------------------------------------------------------------


@pytest.mark.parametrize("version,scores_path,metrics_path", [
    (4, "/api/public/v3/scores", "/api/public/v2/metrics"), (3, "/api/public/v2/scores", "/api/public/metrics")])
def test_scores_and_metrics_follow_the_servers_version(version: int, scores_path: str, metrics_path: str) -> None:
    with LangfuseStandin(version=version) as server:
        server.add_project("p", "P", "pk-lf-v", "sk-lf-v")
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        trace_id = server.seed_traces("p", 3, start=start, interval=dt.timedelta(minutes=1))[0]
        client = LangfuseClient(server.url, "pk-lf-v", "sk-lf-v")
        client.create_score({"id": "s1", "traceId": trace_id, "name": "helpfulness", "value": 0.5,
                             "dataType": "NUMERIC"})
        assert [s["id"] for s in client.scores(trace_id=trace_id)] == ["s1"]
        rows = client.metrics({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
                               "dimensions": [], "filters": [], "fromTimestamp": "2026-01-01T00:00:00Z",
                               "toTimestamp": "2026-01-02T00:00:00Z"})
        assert rows == [{"count_count": 3}]
        assert sent(server, "GET", scores_path) == 1 and sent(server, "GET", metrics_path) == 1
        later = [t["id"] for t in client.traces(from_time="2026-01-01T00:01:00+00:00")]
        assert len(later) == 2 and trace_id not in later
        assert server.violations == []


def test_the_health_check_goes_without_the_keys_and_the_rest_with_them(langfuse_standin: LangfuseStandin) -> None:
    client = client_of(langfuse_standin)
    client.check()
    keys = {r["path"]: r["public_key"] for r in langfuse_standin.requests}
    assert keys == {"/api/public/health": None, "/api/public/projects": PUBLIC_KEY}
    assert {dict((k.lower(), v) for k, v in r["headers"].items())["user-agent"] for r in langfuse_standin.requests} \
        == {"llmops-portal"}
