"""Tests of the Langfuse stand-in itself, with real HTTP requests.

Every test ends by checking ``server.violations == []`` where the exchange is
meant to be valid: the stand-in validates its own responses against the spec,
and with ``spec.CROSS_CHECK`` on (see the autouse fixture) its fast schema checker
is compared with jsonschema on every validation.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.langfuse_standin import LangfuseStandin, spec
from tests.langfuse_standin.fixtures import PUBLIC_KEY, SECRET_KEY

AUTH = (PUBLIC_KEY, SECRET_KEY)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cross_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validate with the fast checker *and* jsonschema; disagreements become violations."""
    monkeypatch.setattr(spec, "CROSS_CHECK", True)


@pytest.fixture
def two_projects() -> Iterator[LangfuseStandin]:
    server = LangfuseStandin(version=4)
    server.add_project("pa", "Project A", "pk-lf-a", "sk-lf-a")
    server.add_project("pb", "Project B", "pk-lf-b", "sk-lf-b")
    with server:
        yield server


def api(server: LangfuseStandin, method: str, path: str, auth: tuple[str, str] | None = AUTH,
        **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, auth=auth, timeout=10, **kwargs)


def ingest(server: LangfuseStandin, events: list[dict[str, Any]], auth: tuple[str, str] = AUTH) -> dict[str, Any]:
    response = api(server, "POST", "/api/public/ingestion", auth=auth, json={"batch": events})
    assert response.status_code == 207, response.text
    return response.json()


def trace_event(trace_id: str, **body: Any) -> dict[str, Any]:
    return {"id": f"ev-{trace_id}", "type": "trace-create", "timestamp": "2025-03-01T12:00:00.000Z",
            "body": {"id": trace_id, **body}}


# ------------------------------------------------------------------- basics


@pytest.mark.parametrize("version", [3, 4])
def test_health_reports_the_major_version(version: int) -> None:
    with LangfuseStandin(version=version) as server:
        response = api(server, "GET", "/api/public/health", auth=None)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "OK"
        assert body["version"].startswith(f"{version}.")
        assert server.violations == []


def test_wrong_or_missing_credentials_get_401(langfuse_standin: LangfuseStandin) -> None:
    wrong = api(langfuse_standin, "GET", "/api/public/traces", auth=(PUBLIC_KEY, "sk-lf-wrong"))
    assert wrong.status_code == 401
    assert "Invalid credentials" in wrong.json()["message"]
    unknown = api(langfuse_standin, "GET", "/api/public/traces", auth=("pk-lf-unknown", SECRET_KEY))
    assert unknown.status_code == 401
    missing = api(langfuse_standin, "GET", "/api/public/traces", auth=None)
    assert missing.status_code == 401
    assert missing.json()["message"] == "No authorization header"
    assert [r["status"] for r in langfuse_standin.requests] == [401, 401, 401]
    assert langfuse_standin.violations == []


def test_unknown_paths_404_and_wrong_methods_405(langfuse_standin: LangfuseStandin) -> None:
    assert api(langfuse_standin, "GET", "/api/public/not-an-endpoint").status_code == 404
    assert api(langfuse_standin, "PUT", "/api/public/traces/abc").status_code == 405
    # In the spec but not implemented by the stand-in: 501, and noted for the test author.
    assert api(langfuse_standin, "GET", "/api/public/v2/prompts").status_code == 501
    assert langfuse_standin.unimplemented == ["GET /api/public/v2/prompts"]


def test_projects_are_isolated(two_projects: LangfuseStandin) -> None:
    server = two_projects
    a, b = ("pk-lf-a", "sk-lf-a"), ("pk-lf-b", "sk-lf-b")
    ingest(server, [trace_event("trace-b", name="secret-b")], auth=b)
    score = api(server, "POST", "/api/public/scores", auth=b, json={"traceId": "trace-b", "name": "q", "value": 1})
    assert score.status_code == 200

    assert api(server, "GET", "/api/public/traces/trace-b", auth=a).status_code == 404
    assert api(server, "GET", "/api/public/traces", auth=a).json()["meta"]["totalItems"] == 0
    assert api(server, "GET", "/api/public/v3/scores", auth=a).json()["data"] == []
    assert api(server, "GET", f"/api/public/v2/scores/{score.json()['id']}", auth=a).status_code == 404
    assert api(server, "GET", "/api/public/v2/observations", auth=a).json()["data"] == []
    # Project B sees its own data.
    assert api(server, "GET", "/api/public/traces/trace-b", auth=b).json()["name"] == "secret-b"
    assert len(api(server, "GET", "/api/public/v3/scores", auth=b).json()["data"]) == 1
    assert api(server, "GET", "/api/public/projects", auth=a).json()["data"][0]["id"] == "pa"
    assert list(server.project("pa").traces) == []
    assert list(server.project("pb").traces) == ["trace-b"]
    assert server.violations == []


# --------------------------------------------------------------------- OTLP


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        any_value = AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = AnyValue(double_value=value)
    elif isinstance(value, list):
        any_value = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
    else:
        any_value = AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _otlp_request(trace_id: bytes, start: datetime) -> ExportTraceServiceRequest:
    """A root span (the request) with a child LLM generation, like LiteLLM's langfuse_otel sends."""
    t0 = int(start.timestamp() * 1e9)
    root = Span(
        trace_id=trace_id, span_id=bytes.fromhex("1111111111111111"), name="litellm_request",
        start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000_000,
        attributes=[_kv("langfuse.trace.name", "chat-completion"), _kv("user.id", "user-42"),
                    _kv("session.id", "session-7"), _kv("langfuse.trace.tags", ["team-a", "prod"]),
                    _kv("langfuse.trace.metadata.tenant", "acme"),
                    _kv("langfuse.observation.input", json.dumps({"messages": [{"role": "user", "content": "hi"}]})),
                    _kv("langfuse.observation.output", json.dumps({"role": "assistant", "content": "hello"}))],
    )
    generation = Span(
        trace_id=trace_id, span_id=bytes.fromhex("2222222222222222"),
        parent_span_id=bytes.fromhex("1111111111111111"), name="chat gpt-4o-mini",
        start_time_unix_nano=t0 + 100_000_000, end_time_unix_nano=t0 + 800_000_000,
        attributes=[_kv("gen_ai.request.model", "gpt-4o-mini"), _kv("gen_ai.usage.prompt_tokens", 12),
                    _kv("gen_ai.usage.completion_tokens", 5), _kv("gen_ai.request.temperature", 0.2),
                    _kv("gen_ai.usage.cost", 0.0042), _kv("langfuse.observation.metadata.route", "default")],
        status=Status(code=Status.STATUS_CODE_OK),
    )
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[_kv("service.name", "litellm-proxy"),
                                      _kv("deployment.environment.name", "staging")]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="litellm", version="1.0"),
                                spans=[root, generation])],
    )])


def test_otlp_protobuf_ingestion_reads_back_as_trace_and_observations(langfuse_standin: LangfuseStandin) -> None:
    server = langfuse_standin
    trace_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    payload = _otlp_request(trace_id, start).SerializeToString()
    response = api(server, "POST", "/api/public/otel/v1/traces", data=payload,
                   headers={"Content-Type": "application/x-protobuf", "x-langfuse-ingestion-version": "4"})
    assert response.status_code == 200, response.text
    assert response.json() == {}
    otel_requests = [r for r in server.requests if r["path"] == "/api/public/otel/v1/traces"]
    assert [r["ingestion_version"] for r in otel_requests] == ["4"]
    assert otel_requests[0]["public_key"] == PUBLIC_KEY

    trace = api(server, "GET", f"/api/public/traces/{trace_id.hex()}").json()
    assert trace["name"] == "chat-completion"
    assert (trace["userId"], trace["sessionId"]) == ("user-42", "session-7")
    assert trace["tags"] == ["team-a", "prod"]
    assert trace["environment"] == "staging"
    assert trace["timestamp"] == "2025-03-01T12:00:00.000Z"
    assert trace["metadata"]["tenant"] == "acme"
    assert trace["input"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert trace["latency"] == pytest.approx(0.9)
    assert trace["totalCost"] == pytest.approx(0.0042)
    by_name = {o["name"]: o for o in trace["observations"]}
    generation = by_name["chat gpt-4o-mini"]
    assert generation["type"] == "GENERATION"
    assert generation["model"] == "gpt-4o-mini"
    assert generation["usageDetails"] == {"input": 12, "output": 5, "total": 17}
    assert generation["modelParameters"] == {"temperature": 0.2}
    assert generation["parentObservationId"] == "1111111111111111"
    assert by_name["litellm_request"]["type"] == "SPAN"

    observations = api(server, "GET", "/api/public/v2/observations", params={
        "traceId": trace_id.hex(), "fields": "core,basic,usage,model,io"}).json()
    assert {o["id"] for o in observations["data"]} == {"1111111111111111", "2222222222222222"}
    v2_generation = next(o for o in observations["data"] if o["type"] == "GENERATION")
    assert v2_generation["providedModelName"] == "gpt-4o-mini"
    assert v2_generation["usageDetails"]["input"] == 12
    assert v2_generation["userId"] == "user-42"
    assert observations["meta"] == {}

    stored = server.project("p1").observations["2222222222222222"]
    assert stored.attributes["gen_ai.request.model"] == "gpt-4o-mini"  # raw attributes are kept
    assert server.violations == []


def test_otlp_json_and_gzip_are_accepted(langfuse_standin: LangfuseStandin) -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"scope": {"name": "x"}, "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "tool-call",
        "startTimeUnixNano": "1740830400000000000", "endTimeUnixNano": "1740830401000000000",
        "attributes": [{"key": "gen_ai.tool.name", "value": {"stringValue": "search"}},
                       {"key": "retries", "value": {"intValue": "3"}}],
    }]}]}]}
    response = api(langfuse_standin, "POST", "/api/public/otel/v1/traces",
                   data=gzip.compress(json.dumps(body).encode()),
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    obs = langfuse_standin.project("p1").observations["eee19b7ec3c1b174"]
    assert (obs.type, obs.name, obs.attributes["retries"]) == ("TOOL", "search", 3)
    assert langfuse_standin.violations == []

    future = api(langfuse_standin, "POST", "/api/public/otel/v1/traces", json=body,
                 headers={"x-langfuse-ingestion-version": "5"})
    assert future.status_code == 400 and "Maximum supported" in future.json()["message"]
    assert len(langfuse_standin.violations) == 1
    langfuse_standin.violations.clear()  # deliberate: the stand-in would fail the test for it


def test_real_otel_sdk_exporter_can_export_to_the_standin(langfuse_standin: LangfuseStandin) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    token = base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    exporter = OTLPSpanExporter(endpoint=f"{langfuse_standin.url}/api/public/otel/v1/traces",
                                headers={"Authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"})
    provider = TracerProvider(resource=SdkResource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("sdk-test")
    with (tracer.start_as_current_span("outer", attributes={"langfuse.trace.name": "sdk-trace"}),
          tracer.start_as_current_span("llm", attributes={"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3})):
        pass
    provider.shutdown()
    traces = api(langfuse_standin, "GET", "/api/public/traces").json()["data"]
    assert [t["name"] for t in traces] == ["sdk-trace"]
    assert len(traces[0]["observations"]) == 2
    assert langfuse_standin.violations == []


# ------------------------------------------------------------- validation


@pytest.mark.langfuse_violations
def test_request_violating_the_spec_gets_400_and_is_recorded(langfuse_standin: LangfuseStandin) -> None:
    response = api(langfuse_standin, "POST", "/api/public/scores", json={"traceId": "t1", "value": 1})
    assert response.status_code == 400
    assert "'name' is a required property" in response.json()["message"]
    assert len(langfuse_standin.violations) == 1
    assert langfuse_standin.violations[0].startswith("request: POST /api/public/scores:")

    langfuse_standin.clear_log()
    bad_query = api(langfuse_standin, "GET", "/api/public/traces", params={"fromTimestamp": "yesterday"})
    assert bad_query.status_code == 400
    assert "fromTimestamp" in langfuse_standin.violations[0]

    langfuse_standin.clear_log()
    result = ingest(langfuse_standin, [trace_event("ok"), {"id": "bad", "type": "trace-create", "body": {}}])
    assert [s["id"] for s in result["successes"]] == ["ev-ok"]
    assert [(e["id"], e["status"]) for e in result["errors"]] == [("bad", 400)]
    assert "timestamp" in result["errors"][0]["error"]
    assert len(langfuse_standin.violations) == 1


@pytest.mark.langfuse_violations
def test_documented_constraints_are_enforced(langfuse_standin: LangfuseStandin) -> None:
    assert api(langfuse_standin, "GET", "/api/public/v3/scores", params={"limit": 101}).status_code == 400
    assert api(langfuse_standin, "GET", "/api/public/v3/scores", params={"fields": "bogus"}).status_code == 400
    assert api(langfuse_standin, "GET", "/api/public/v3/scores",
               params={"traceId": "a", "sessionId": "b"}).status_code == 400
    bool_score = {"traceId": "t", "name": "ok", "value": 2, "dataType": "BOOLEAN"}
    assert api(langfuse_standin, "POST", "/api/public/scores", json=bool_score).status_code == 400
    assert len(langfuse_standin.violations) == 4


def test_spec_translation_handles_the_openapi_quirks() -> None:
    """nullable next to $ref, overlapping oneOf branches, int64-as-string in OTLP/JSON."""
    v4 = spec.load_spec(4)

    def generation(**body: Any) -> dict[str, Any]:
        return {"id": "e", "type": "generation-create", "timestamp": "2025-01-01T00:00:00Z", "body": body}

    assert v4.validate_component("IngestionEvent", generation(modelParameters={"max_tokens": 10})) is None
    assert v4.validate_component("IngestionEvent", generation(
        usageDetails={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})) is None
    assert v4.validate_component("IngestionEvent", generation(level=None)) is None
    assert "LOUD" in (v4.validate_component("IngestionEvent", generation(level="LOUD")) or "")
    assert v4.validate_component("OtelAttributeValue", {"intValue": "9007199254740993"}) is None
    assert v4.validate_component("OtelAttributeValue", {"intValue": "x"}) is not None
    assert set(spec.paths_missing_in(3)) == {"/api/public/feedback", *spec.V4_ONLY_PATHS}
    assert spec.paths_missing_in(4) == []


# ------------------------------------------------------------------ scores


def test_score_create_is_idempotent_by_id(langfuse_standin: LangfuseStandin) -> None:
    ingest(langfuse_standin, [trace_event("t1")])
    body = {"id": "score-1", "traceId": "t1", "name": "accuracy", "value": 0.5, "comment": "first"}
    first = api(langfuse_standin, "POST", "/api/public/scores", json=body)
    second = api(langfuse_standin, "POST", "/api/public/scores", json={**body, "value": 0.75, "comment": "retry"})
    assert first.json() == second.json() == {"id": "score-1"}
    assert list(langfuse_standin.project("p1").scores) == ["score-1"]

    scores = api(langfuse_standin, "GET", "/api/public/v3/scores", params={"fields": "details,subject"}).json()
    assert [(s["id"], s["value"], s["comment"]) for s in scores["data"]] == [("score-1", 0.75, "retry")]
    assert scores["data"][0]["subject"] == {"kind": "trace", "id": "t1"}
    assert api(langfuse_standin, "GET", "/api/public/traces/t1").json()["scores"][0]["value"] == 0.75
    assert api(langfuse_standin, "GET", "/api/public/v2/scores/score-1").json()["value"] == 0.75

    assert api(langfuse_standin, "DELETE", "/api/public/scores/score-1").status_code == 204
    assert api(langfuse_standin, "GET", "/api/public/v2/scores/score-1").status_code == 404
    assert langfuse_standin.violations == []


def test_score_types_configs_and_v3_cursor_paging(langfuse_standin: LangfuseStandin) -> None:
    config = api(langfuse_standin, "POST", "/api/public/score-configs", json={
        "name": "verdict", "dataType": "CATEGORICAL",
        "categories": [{"label": "good", "value": 1}, {"label": "bad", "value": 0}]}).json()
    assert api(langfuse_standin, "GET", f"/api/public/score-configs/{config['id']}").json()["name"] == "verdict"
    patched = api(langfuse_standin, "PATCH", f"/api/public/score-configs/{config['id']}",
                  json={"description": "human verdict"}).json()
    assert patched["description"] == "human verdict"
    assert api(langfuse_standin, "GET", "/api/public/score-configs").json()["meta"]["totalItems"] == 1

    for i in range(5):
        assert api(langfuse_standin, "POST", "/api/public/scores",
                   json={"traceId": f"t{i}", "name": "n", "value": float(i)}).status_code == 200
    api(langfuse_standin, "POST", "/api/public/scores",
        json={"traceId": "t9", "name": "verdict", "value": "good", "configId": config["id"]})
    api(langfuse_standin, "POST", "/api/public/scores",
        json={"sessionId": "s1", "name": "ok", "value": 1, "dataType": "BOOLEAN"})

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api(langfuse_standin, "GET", "/api/public/v3/scores", params=params).json()
        seen += page["data"]
        cursor = page["meta"].get("cursor")
        if not cursor:
            break
    assert len(seen) == 7 and len({s["id"] for s in seen}) == 7
    values = {s["name"]: s["value"] for s in seen if s["name"] != "n"}
    assert values == {"verdict": "good", "ok": True}
    v2 = api(langfuse_standin, "GET", "/api/public/v2/scores", params={"name": "verdict"}).json()["data"]
    assert (v2[0]["dataType"], v2[0]["value"], v2[0]["stringValue"]) == ("CATEGORICAL", 1.0, "good")
    numeric = api(langfuse_standin, "GET", "/api/public/v3/scores",
                  params={"dataType": "NUMERIC", "valueMin": 2, "valueMax": 3}).json()["data"]
    assert sorted(s["value"] for s in numeric) == [2.0, 3.0]
    assert langfuse_standin.violations == []


# ----------------------------------------------------------------- datasets


def test_datasets_items_and_run_items_round_trip(langfuse_standin: LangfuseStandin) -> None:
    server = langfuse_standin
    dataset = api(server, "POST", "/api/public/v2/datasets", json={
        "name": "qa/golden", "description": "golden set",
        "inputSchema": {"type": "object", "required": ["question"]}}).json()
    assert api(server, "GET", "/api/public/v2/datasets/qa%2Fgolden").json()["id"] == dataset["id"]
    assert api(server, "GET", "/api/public/v2/datasets").json()["meta"]["totalItems"] == 1

    item = {"datasetName": "qa/golden", "id": "item-1", "input": {"question": "2+2?"}, "expectedOutput": "4"}
    assert api(server, "POST", "/api/public/dataset-items", json=item).status_code == 200
    updated = api(server, "POST", "/api/public/dataset-items", json={**item, "expectedOutput": "four"}).json()
    assert updated["expectedOutput"] == "four" and updated["status"] == "ACTIVE"
    bad = api(server, "POST", "/api/public/dataset-items", json={"datasetName": "qa/golden", "input": {"q": 1}})
    assert bad.status_code == 400  # does not match the dataset's inputSchema
    api(server, "POST", "/api/public/dataset-items", json={"datasetName": "qa/golden", "id": "item-2",
                                                           "input": {"question": "3+3?"}})
    listed = api(server, "GET", "/api/public/dataset-items", params={"datasetName": "qa/golden"}).json()
    assert {i["id"] for i in listed["data"]} == {"item-1", "item-2"}
    assert len(server.project("p1").dataset_items) == 2

    ingest(server, [trace_event("run-trace-1", name="eval"), trace_event("run-trace-2", name="eval")])
    for n, item_id in enumerate(["item-1", "item-2"], start=1):
        run_item = api(server, "POST", "/api/public/dataset-run-items", json={
            "runName": "run-a", "runDescription": "first run", "datasetItemId": item_id,
            "traceId": f"run-trace-{n}", "metadata": {"model": "m1"}})
        assert run_item.status_code == 200, run_item.text
    runs = api(server, "GET", "/api/public/datasets/qa%2Fgolden/runs").json()
    assert [r["name"] for r in runs["data"]] == ["run-a"]
    run = api(server, "GET", "/api/public/datasets/qa%2Fgolden/runs/run-a").json()
    assert {i["datasetItemId"] for i in run["datasetRunItems"]} == {"item-1", "item-2"}
    run_items = api(server, "GET", "/api/public/dataset-run-items",
                    params={"datasetId": dataset["id"], "runName": "run-a"}).json()
    assert run_items["meta"]["totalItems"] == 2

    since = "2000-01-01T00:00:00Z"
    experiments = api(server, "GET", "/api/public/experiments",
                      params={"fromStartTime": since, "fields": "core,metadata"}).json()["data"]
    assert [(e["name"], e["itemCount"], e["datasetId"]) for e in experiments] == [("run-a", 2, dataset["id"])]
    assert experiments[0]["metadata"] == {"model": "m1"}
    items = api(server, "GET", "/api/public/experiment-items",
                params={"fromStartTime": since, "fields": "core,dataset,io"}).json()["data"]
    assert {(i["experimentItemId"], i["expectedOutput"]) for i in items} == {("item-1", "four"), ("item-2", None)}

    assert api(server, "DELETE", "/api/public/datasets/qa%2Fgolden/runs/run-a").status_code == 200
    assert server.project("p1").dataset_run_items == {}
    assert api(server, "DELETE", "/api/public/dataset-items/item-2").status_code == 200
    assert api(server, "GET", "/api/public/dataset-items/item-2").status_code == 404
    assert server.violations == []


# ------------------------------------------------------------------ metrics


def test_metrics_compute_real_aggregates(langfuse_standin: LangfuseStandin) -> None:
    server = langfuse_standin
    start = datetime(2025, 1, 1, tzinfo=UTC)
    server.seed_traces("p1", 30, start=start, interval=timedelta(hours=1),
                       model=lambda i: "gpt-4o" if i % 3 == 0 else "gpt-4o-mini",
                       input_tokens=lambda i: i, output_tokens=2, cost=0.5)
    query = {
        "view": "observations", "dimensions": [{"field": "providedModelName"}],
        "metrics": [{"measure": "count", "aggregation": "count"}, {"measure": "totalTokens", "aggregation": "sum"},
                    {"measure": "totalCost", "aggregation": "sum"}, {"measure": "latency", "aggregation": "p95"}],
        "filters": [], "fromTimestamp": "2025-01-01T00:00:00Z", "toTimestamp": "2025-01-03T00:00:00Z",
    }
    rows = api(server, "GET", "/api/public/v2/metrics", params={"query": json.dumps(query)}).json()["data"]
    by_model = {r["providedModelName"]: r for r in rows}
    assert by_model["gpt-4o"]["count_count"] == 10
    assert by_model["gpt-4o-mini"]["count_count"] == 20
    assert by_model["gpt-4o"]["sum_totalTokens"] == sum(i + 2 for i in range(0, 30, 3))
    assert by_model["gpt-4o-mini"]["sum_totalCost"] == pytest.approx(10.0)
    assert by_model["gpt-4o"]["p95_latency"] == pytest.approx(500.0)

    daily = {**query, "dimensions": [], "metrics": [{"measure": "count", "aggregation": "count"}],
             "timeDimension": {"granularity": "day"},
             "filters": [{"column": "providedModelName", "operator": "=", "value": "gpt-4o", "type": "string"}]}
    rows = api(server, "GET", "/api/public/v2/metrics", params={"query": json.dumps(daily)}).json()["data"]
    assert [(r["time_dimension"], r["count_count"]) for r in rows] == [
        ("2025-01-01T00:00:00.000Z", 8), ("2025-01-02T00:00:00.000Z", 2)]

    traces_query = {"view": "traces", "metrics": [{"measure": "count", "aggregation": "count"}],
                    "fromTimestamp": "2025-01-01T00:00:00Z", "toTimestamp": "2025-01-01T10:00:00Z"}
    legacy = api(server, "GET", "/api/public/metrics", params={"query": json.dumps(traces_query)}).json()["data"]
    assert legacy == [{"count_count": 10}]
    high_cardinality = {**query, "dimensions": [{"field": "traceId"}]}
    assert api(server, "GET", "/api/public/v2/metrics",
               params={"query": json.dumps(high_cardinality)}).status_code == 400
    server.violations.clear()  # the 400 above was deliberate
    assert server.violations == []


# ------------------------------------------------------------------- faults


def test_injected_429_with_retry_after_then_success(langfuse_standin: LangfuseStandin) -> None:
    langfuse_standin.inject(method="POST", path_regex=r"/ingestion$", status=429, times=2, retry_after=1.0)
    statuses = []
    for _ in range(3):
        response = api(langfuse_standin, "POST", "/api/public/ingestion", json={"batch": [trace_event("t")]})
        statuses.append((response.status_code, response.headers.get("Retry-After")))
    assert statuses == [(429, "1"), (429, "1"), (207, None)]
    assert api(langfuse_standin, "GET", "/api/public/traces").status_code == 200  # other paths unaffected
    assert [r["fault"] for r in langfuse_standin.requests] == [True, True, False, False]
    assert langfuse_standin.violations == []


def test_injected_delay_triggers_client_timeouts(langfuse_standin: LangfuseStandin) -> None:
    langfuse_standin.inject(path_regex="/api/public/traces", delay=1.5, times=1)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.get(langfuse_standin.url + "/api/public/traces", auth=AUTH, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert api(langfuse_standin, "GET", "/api/public/traces").status_code == 200
    langfuse_standin.inject(status=503, times=1, retry_after=None)
    failed = api(langfuse_standin, "GET", "/api/public/traces")
    assert failed.status_code == 503 and "Retry-After" not in failed.headers
    langfuse_standin.inject(times=5)
    langfuse_standin.clear_faults()
    assert api(langfuse_standin, "GET", "/api/public/traces").status_code == 200


# -------------------------------------------------------------- v3 vs v4


def test_v3_mode_404s_v4_only_endpoints() -> None:
    with LangfuseStandin(version=3) as server:
        server.add_project("p1", "P1", PUBLIC_KEY, SECRET_KEY)
        for path in ("/api/public/v2/observations", "/api/public/v3/scores", "/api/public/v2/metrics?query={}"):
            assert api(server, "GET", path).status_code == 404, path
        assert api(server, "POST", "/api/public/feedback", json={}).status_code == 404
        assert api(server, "GET", "/api/public/traces").status_code == 200
        assert api(server, "GET", "/api/public/observations").status_code == 200
        assert server.violations == []
    with LangfuseStandin(version=4) as server:
        server.add_project("p1", "P1", PUBLIC_KEY, SECRET_KEY)
        assert api(server, "GET", "/api/public/v2/observations").status_code == 200


def test_deprecated_endpoints_can_be_switched_off() -> None:
    with LangfuseStandin(version=4, serve_deprecated=False) as server:
        server.add_project("p1", "P1", PUBLIC_KEY, SECRET_KEY)
        assert api(server, "GET", "/api/public/traces").status_code == 404
        assert api(server, "GET", "/api/public/v2/observations").status_code == 200


# -------------------------------------------------------------------- scale


def test_seed_100k_traces_and_page_through_all_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec, "CROSS_CHECK", False)  # jsonschema on 100k traces would take minutes
    with LangfuseStandin() as server:
        server.add_project("p1", "P1", PUBLIC_KEY, SECRET_KEY)
        started = time.perf_counter()
        ids = server.seed_traces("p1", 100_000)
        seeded = time.perf_counter() - started
        session = requests.Session()
        session.auth = AUTH
        seen: list[str] = []
        started = time.perf_counter()
        page = 1
        while True:
            body = session.get(f"{server.url}/api/public/traces", params={"page": page, "limit": 100},
                               timeout=30).json()
            seen += [t["id"] for t in body["data"]]
            if page >= body["meta"]["totalPages"]:
                break
            page += 1
        paged = time.perf_counter() - started
        print(f"\nseeded 100,000 traces in {seeded:.2f}s, paged through {page} pages in {paged:.2f}s")
        assert body["meta"]["totalItems"] == 100_000 and page == 1000
        assert seen == ids[::-1]  # newest first, each exactly once
        assert server.violations == []


# ------------------------------------------------------------ organisation


def test_org_key_needs_enterprise_entitlement_to_create_projects(langfuse_standin: LangfuseStandin) -> None:
    server = langfuse_standin
    org = ("pk-lf-org", "sk-lf-org")
    server.set_org_key(*org, entitled=False)
    body = {"name": "new-project", "retention": 0, "metadata": {"team": "ml"}}
    denied = api(server, "POST", "/api/public/projects", auth=org, json=body)
    assert denied.status_code == 403
    assert "enterprise" in denied.json()["message"]
    project_key = api(server, "POST", "/api/public/projects", json=body)
    assert project_key.status_code == 403  # a project key is not an organisation key
    assert "Organization-scoped" in project_key.json()["message"]

    server.set_org_key(*org, entitled=True)
    created = api(server, "POST", "/api/public/projects", auth=org, json=body)
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["name"] == "new-project" and project["metadata"] == {"team": "ml"}
    assert project["organization"]["id"] == server.organization.id
    assert api(server, "POST", "/api/public/projects", auth=org, json=body).status_code == 409

    key = api(server, "POST", f"/api/public/projects/{project['id']}/apiKeys", auth=org,
              json={"note": "ci"}).json()
    assert key["publicKey"].startswith("pk-lf-") and key["secretKey"].startswith("sk-lf-")
    own = api(server, "GET", "/api/public/projects", auth=(key["publicKey"], key["secretKey"])).json()
    assert own["data"][0]["id"] == project["id"]
    listed = api(server, "GET", f"/api/public/projects/{project['id']}/apiKeys", auth=org).json()
    assert [k["note"] for k in listed["apiKeys"]] == ["ci"]
    assert api(server, "GET", "/api/public/traces", auth=org).status_code == 403  # org key ≠ project key
    assert server.violations == []


# ------------------------------------------------------- official client


def test_official_langfuse_client_parses_the_responses(langfuse_standin: LangfuseStandin) -> None:
    """The Fern-generated client of the Langfuse SDK is a second opinion on the shapes."""
    from langfuse.api.client import LangfuseAPI

    client = LangfuseAPI(base_url=langfuse_standin.url, username=PUBLIC_KEY, password=SECRET_KEY, timeout=10)
    assert client.health.health().status == "OK"
    langfuse_standin.seed_traces("p1", 3, user_id="u1")
    traces = client.trace.list(limit=2)
    assert traces.meta.total_items == 3 and len(traces.data) == 2
    full = client.trace.get(traces.data[0].id)
    assert full.observations[0].usage_details == {"input": 10, "output": 20, "total": 30}
    observations = client.observations.get_many(fields="core,basic,usage", limit=10)
    assert len(observations.data) == 3
    client.scores.create(name="helpful", value=1, trace_id=full.id, data_type="BOOLEAN")
    assert client.scores_v3.get_many_v3(fields="subject").data[0].value is True
    client.datasets.create(name="ds")
    client.dataset_items.create(dataset_name="ds", input={"q": 1}, id="i1")
    assert client.dataset_items.list(dataset_name="ds").data[0].id == "i1"
    assert client.projects.get().data[0].id == "p1"
    assert langfuse_standin.violations == []


def test_official_langfuse_sdk_traces_and_runs_experiments_against_the_standin() -> None:
    """End to end with the Langfuse Python SDK: auth check, OTel tracing, datasets, experiments."""
    from langfuse import Langfuse, propagate_attributes

    public, secret = f"pk-lf-{uuid.uuid4()}", f"sk-lf-{uuid.uuid4()}"  # SDK clients are cached per key
    with LangfuseStandin() as server:
        server.add_project("sdk", "SDK", public, secret)
        client = Langfuse(public_key=public, secret_key=secret, host=server.url)
        try:
            assert client.auth_check()
            with (client.start_as_current_observation(name="handle-request", as_type="span", input={"q": "hi"}),
                  propagate_attributes(user_id="user-1", session_id="session-1", tags=["sdk"]),
                  client.start_as_current_observation(name="llm", as_type="generation", model="gpt-4o",
                                                      usage_details={"input": 5, "output": 7}) as generation):
                generation.update(output="hello")
            client.flush()
            traces = api(server, "GET", "/api/public/traces", auth=(public, secret)).json()["data"]
            assert [(t["name"], t["userId"], t["sessionId"], t["tags"]) for t in traces] == [
                ("handle-request", "user-1", "session-1", ["sdk"])]

            client.create_dataset(name="sdk-ds")
            client.create_dataset_item(dataset_name="sdk-ds", input={"x": 1}, expected_output=2)
            result = client.get_dataset("sdk-ds").run_experiment(
                name="plus-one", task=lambda *, item, **_: item.input["x"] + 1)
            client.flush()
            assert len(result.item_results) == 1
        finally:
            client.shutdown()
        since = "2000-01-01T00:00:00Z"
        items = api(server, "GET", "/api/public/experiment-items", auth=(public, secret),
                    params={"fromStartTime": since, "fields": "core,io"}).json()["data"]
        assert [(i["output"], i["expectedOutput"]) for i in items] == [(2, 2)]  # run item and spans: one item
        assert server.violations == []


# ------------------------------------------------------------------ process


def test_runs_as_a_subprocess() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.langfuse_standin", "--port", "0", "--version", "4",
         "--project", "p1:pk-lf-1:sk-lf-1", "--project", "p2:pk-lf-2:sk-lf-2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ")
        assert requests.get(f"{url}/api/public/health", timeout=5).json()["version"].startswith("4.")
        assert requests.get(f"{url}/api/public/traces", auth=("pk-lf-2", "sk-lf-2"), timeout=5).status_code == 200
        assert requests.get(f"{url}/_standin/violations", timeout=5).json() == {"violations": []}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_test_during_which_the_standin_recorded_a_violation_fails(langfuse_standin: LangfuseStandin) -> None:
    """The plugin's check (fixtures.pytest_runtest_call), driven around an invalid request
    as pytest drives it around a test."""
    from types import SimpleNamespace

    from tests.langfuse_standin import fixtures

    unmarked = SimpleNamespace(get_closest_marker=lambda name: None)
    around = fixtures.pytest_runtest_call(unmarked)  # type: ignore[arg-type]
    next(around)  # the test starts
    response = api(langfuse_standin, "POST", "/api/public/scores", json={"traceId": "t1", "value": 1})
    assert response.status_code == 400  # a client that swallows this 400 would not notice
    with pytest.raises(pytest.fail.Exception) as failed:
        around.send(None)  # the test ends
    assert "violate the Langfuse API spec" in str(failed.value)
    assert "request: POST /api/public/scores: " in str(failed.value) and "'name' is a required property" in str(
        failed.value)
    assert langfuse_standin.violations == []  # reported once, not again for the next test

    clean = fixtures.pytest_runtest_call(unmarked)  # type: ignore[arg-type]
    next(clean)
    assert api(langfuse_standin, "GET", "/api/public/health").status_code == 200
    with pytest.raises(StopIteration):
        clean.send(None)  # a test without violations passes

    marked = SimpleNamespace(get_closest_marker=lambda name: object() if name == "langfuse_violations" else None)
    deliberate = fixtures.pytest_runtest_call(marked)  # type: ignore[arg-type]
    next(deliberate)
    api(langfuse_standin, "POST", "/api/public/scores", json={"traceId": "t1", "value": 1})
    with pytest.raises(StopIteration):
        deliberate.send(None)  # marked: provoked on purpose
