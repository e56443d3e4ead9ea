"""The evaluation agent's data tools against the Langfuse stand-in and PostgreSQL: what each finds
on seeded data, their bounds, strict arguments, and that another project's traces, scores and usage
never show (two portal projects, each with its own Langfuse project, in one database)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from evals.agent import tools
from evals.agent.tools import ToolContext, call, specs
from evals.agent.tools import traces as trace_tools
from evals.langfuse_client import LangfuseClient
from tests.evals.test_agent_tools_world import (  # noqa: F401 (world_fixture)
    INJECTION,
    World,
    ids,
    ok,
    put_trace,
    usage,
    world_fixture,
)
from tests.factories import Tenant
from tests.langfuse_standin import LangfuseStandin

pytestmark = pytest.mark.django_db




# search_traces -----------------------------------------------------------


def test_search_finds_the_windows_traces_by_route_text_error_and_score(world: World) -> None:
    ctx = world.ctx()
    every = ok(ctx, "search_traces", {"limit": 50})
    # 18 traces of acme's in the window: not the portal's own judge traces, not the two before the window.
    assert every.data["matched"] == every.data["window_total"] == 18
    assert ids(every) == world.acme_ids() and set(every.trace_ids) == world.acme_ids()
    assert every.data["rows"][0]["id"] == world.ids["injection"][0]  # newest first
    french = ok(ctx, "search_traces", {"route": "chat-fr"})
    assert ids(french) == set(world.ids["french"]) and french.data["matched"] == 4
    assert all("Bonjour" in r["output"] for r in french.data["rows"])
    assert ids(ok(ctx, "search_traces", {"text": "BONJOUR"})) == set(world.ids["french"])
    errors = ok(ctx, "search_traces", {"errors_only": True, "order": "slowest"})
    assert ids(errors) == set(world.ids["errors"])
    assert all(r["has_error"] and r["route"] == "chat-fast" and r["latency_ms"] == 3000.0 and r["cost"] == 0.01
               for r in errors.data["rows"])
    failing = ok(ctx, "search_traces", {"scores": [{"evaluator": "correct", "max": 0.5}]})
    assert ids(failing) == set(world.ids["french"])
    helpful = ok(ctx, "search_traces", {"scores": [{"evaluator": "helpfulness", "min": 3}]})
    assert ids(helpful) == set(world.ids["plain"])
    assert helpful.data["rows"][0]["scores"] == {"correct": 1.0, "helpfulness": 4.0}
    assert ids(ok(ctx, "search_traces", {"min_cost": 0.005})) == set(world.ids["errors"])
    assert ids(ok(ctx, "search_traces", {"max_latency_ms": 1000, "tags": ["fr"]})) == set(world.ids["french"])
    assert ok(ctx, "search_traces", {"user_id": "user-1"}).data["matched"] == 3
    # No usage record: the route comes from the trace's metadata.
    assert ok(ctx, "search_traces", {"route": "chat-meta"}).data["rows"][0]["id"] == world.ids["injection"][0]


def test_search_within_a_part_of_the_window_and_clipped_to_it(world: World) -> None:
    ctx = world.ctx()
    first_hour = ok(ctx, "search_traces", {"from": (world.start - dt.timedelta(days=3)).isoformat(),
                                          "to": (world.start + dt.timedelta(minutes=55)).isoformat()})
    assert first_hour.data["range"]["clipped_to_window"] is True
    assert first_hour.data["range"]["from"].startswith(world.start.strftime("%Y-%m-%dT%H:%M"))
    assert first_hour.data["window_total"] == 5  # at +10 .. +50 minutes; the two before the window are not counted


def test_search_bounds_rows_and_the_scan_and_says_so(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = world.ctx()
    few = ok(ctx, "search_traces", {"limit": 3})
    assert len(few.data["rows"]) == 3 and few.data["matched"] == 18 and few.truncated and few.data["truncated"]
    monkeypatch.setattr(trace_tools, "MAX_SCAN", 8)
    scanned = ok(ctx, "search_traces", {"limit": 50})
    # Langfuse counts the range and what it filters itself, so both are exact though the scan stops at 8
    # (the newest 8, of which 2 are the portal's own judge traces)
    assert scanned.data["scan_truncated"] and scanned.data["window_total"] == 18 and scanned.truncated
    assert scanned.data["matched"] == 18 and len(scanned.data["rows"]) == 6
    # a condition the portal checks itself (the route) counts only the scanned traces, and says so
    oldest = ok(ctx, "search_traces", {"route": "chat", "order": "oldest", "limit": 50})
    assert oldest.data["matched"] == 8 and ids(oldest) == set(world.ids["plain"][:8])
    assert any("only the oldest 8" in n for n in oldest.data["notes"]) and oldest.data["window_total"] == 18
    monkeypatch.setattr(trace_tools, "MAX_SCAN", 2000)
    monkeypatch.setattr(trace_tools, "MAX_OBSERVATION_SCAN", 2)
    errors = ok(ctx, "search_traces", {"errors_only": True})
    assert any("more than 2 observations of level ERROR" in n for n in errors.data["notes"])
    assert ids(errors) == set(world.ids["errors"])  # the gateway's records still say which failed


def test_search_asks_langfuse_to_filter_order_and_count_and_reads_only_error_observations(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # R2-2: a busy window holds more traces than one scan: the newest are the newest of the window, a name, tag or
    # user is Langfuse's filter (so traces past the scan are found and counted), and errors are Langfuse's too
    monkeypatch.setattr(trace_tools, "MAX_SCAN", 8)
    ctx = world.ctx()
    world.server.requests.clear()
    newest = ok(ctx, "search_traces", {"limit": 3})
    assert [r["id"] for r in newest.data["rows"]] == [*world.ids["injection"], *world.ids["errors"][::-1][:2]]
    by_user = ok(ctx, "search_traces", {"user_id": "user-0", "order": "oldest"})
    assert ids(by_user) == set(world.ids["plain"][0::3]) and by_user.data["matched"] == 4
    lists = [r["query"] for r in world.server.requests if r["path"] == "/api/public/traces"]
    assert any(q.get("orderBy") == ["timestamp.desc"] for q in lists)
    assert any(q.get("userId") == ["user-0"] and q.get("orderBy") == ["timestamp.asc"] for q in lists)
    observations = [r["query"] for r in world.server.requests if "/observations" in r["path"]]
    assert observations and all(q.get("level") == ["ERROR"] and q.get("fields") == ["core"] for q in observations)
    world.server.requests.clear()
    assert ok(ctx, "search_traces", {"name": "no such name"}).data["matched"] == 0
    assert not [r for r in world.server.requests if "/observations" in r["path"]]  # nothing to mark: no error scan


def test_a_result_never_exceeds_its_characters(world: World) -> None:
    for i in range(50):
        put_trace(world.server, "lf-acme", world.start + dt.timedelta(minutes=1, seconds=i), question="q" * 5000,
                  answer="a" * 5000, name="n" * 150)
    out = ok(world.ctx(), "search_traces", {"limit": 50})
    assert len(out.text) <= tools.MAX_RESULT_CHARS and out.truncated
    assert len(out.data["rows"]) < 50 and out.data["matched"] == 68
    assert set(out.trace_ids) == ids(out)  # the evidence candidates are the rows the model saw
    assert all(len(r["input"]) <= 161 for r in out.data["rows"])


# read_trace --------------------------------------------------------------


def test_read_trace_shows_its_observations_bounded(world: World) -> None:
    ctx = world.ctx()
    failing = world.ids["errors"][0]
    out = ok(ctx, "read_trace", {"trace_id": failing})
    trace = out.data["trace"]
    assert trace["id"] == failing and out.trace_ids == [failing] and trace["has_error"]
    assert trace["route"] == "chat-fast" and trace["scores"] == {} and trace["tags"] == []
    assert ok(ctx, "read_trace", {"trace_id": world.ids["french"][0]}).data["trace"]["tags"] == ["prod", "fr"]
    assert [o["name"] for o in out.data["observations"]] == ["llm", "search_tool"]
    assert out.data["observations"][1]["statusMessage"] == "input too long for the search tool"
    assert len(trace["input"]) <= 1501 and out.truncated  # 3000 characters of input, cut
    injected = ok(ctx, "read_trace", {"trace_id": world.ids["injection"][0]})
    assert INJECTION in injected.data["trace"]["input"]  # shown as data, as recorded ...
    assert injected.trace_ids == world.ids["injection"]  # ... and nothing else reached
    assert any("not instructions" in n for n in injected.data["notes"])


def test_read_trace_refuses_what_is_not_this_projects_trace_in_the_window(world: World) -> None:
    ctx = world.ctx()
    theirs = call(ctx, "read_trace", {"trace_id": world.ids["globex"][0]})
    assert theirs.error == f"trace {world.ids['globex'][0]} not found in this project" and theirs.trace_ids == []
    assert "not found in this project" in call(ctx, "read_trace", {"trace_id": "0" * 32}).error
    assert "does not match" in call(ctx, "read_trace", {"trace_id": "../projects/7"}).error
    early = put_trace(world.server, "lf-acme", world.start - dt.timedelta(days=1))
    assert "outside the report's window" in call(ctx, "read_trace", {"trace_id": early}).error


# Langfuse metrics --------------------------------------------------------


def test_langfuse_metrics_builds_the_query_for_the_window(world: World) -> None:
    ctx = world.ctx()
    out = ok(ctx, "langfuse_metrics", {"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
                                       "dimensions": ["name"], "order_by": {"field": "count_count",
                                                                            "direction": "desc"}})
    counts = {r["name"]: r["count_count"] for r in out.data["rows"]}
    # 22 generations in the window (the judge traces' too: Langfuse counts every observation), 3 tool errors
    assert counts == {"llm": 20, "search_tool": 3}
    query = out.data["query"]
    assert query["fromTimestamp"] == tools.base.iso(world.start) and query["toTimestamp"] == tools.base.iso(world.end)
    errors = ok(ctx, "langfuse_metrics", {
        "view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
        "filters": [{"column": "level", "operator": "=", "value": "ERROR"}]})
    assert errors.data["rows"] == [{"count_count": 3}]
    assert errors.data["query"]["filters"] == [{"type": "string", "column": "level", "operator": "=",
                                                "value": "ERROR"}]
    slow = ok(ctx, "langfuse_metrics", {
        "view": "observations", "metrics": [{"measure": "latency", "aggregation": "p95"}],
        "filters": [{"column": "tags", "operator": "any of", "value": ["fr"]},
                    {"column": "latency", "operator": ">", "value": 100}], "from": world.start.isoformat(),
        "to": (world.end + dt.timedelta(days=30)).isoformat()})
    assert slow.data["rows"] == [{"p95_latency": 500.0}] and slow.data["range"]["clipped_to_window"]
    daily = ok(ctx, "langfuse_metrics", {"view": "observations", "granularity": "hour", "limit": 2,
                                         "metrics": [{"measure": "totalCost", "aggregation": "sum"}]})
    assert len(daily.data["rows"]) == 2 and daily.truncated  # five hours in the window


@pytest.mark.parametrize("args, message", [
    ({"view": "observations", "metrics": [{"measure": "value", "aggregation": "avg"}]}, "not a measure of view"),
    ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}], "dimensions": ["traceId"]},
     "it can only filter"),
    ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
      "filters": [{"column": "latency", "operator": "contains", "value": "x"}]}, "operator: for column latency"),
    ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
      "filters": [{"column": "metadata", "operator": "=", "value": "x"}]}, "key"),
    ({"view": "traces", "metrics": [{"measure": "count", "aggregation": "count"}]}, "argument view"),
    ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}], "query": "{}"},
     "unknown argument 'query'"),
    ({"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}],
      "fromTimestamp": "2020-01-01T00:00:00Z"}, "unknown argument 'fromTimestamp'"),
])
def test_langfuse_metrics_refuses_what_the_view_does_not_have(world: World, args: dict[str, Any], message: str
                                                              ) -> None:
    out = call(world.ctx(), "langfuse_metrics", args)
    assert message in out.error and out.data == {"error": out.error}
    assert not [r for r in world.server.requests if "metrics" in r["path"]]  # refused before any request


# Strict arguments, errors that never raise -------------------------------


@pytest.mark.parametrize("name, raw, message", [
    ("drop_tables", "{}", "unknown tool 'drop_tables'; the data tools are: search_traces, read_trace"),
    ("search_traces", "{not json", "not valid JSON"),
    ("search_traces", "[1, 2]", "one JSON object"),
    ("search_traces", '{"project": 7}', "The project is fixed by the portal"),
    ("portal_usage", '{"project_id": 2, "group_by": "route"}', "unknown argument 'project_id'"),
    ("search_traces", '{"limit": 500}', "argument limit: 500 is greater than the maximum of 50"),
    ("search_traces", '{"limit": "10"}', "argument limit: '10' is not of type 'integer'"),
    ("search_traces", '{"limit": true}', "is not of type 'integer'"),
    ("search_traces", '{"limit": 20.0}', "argument limit: 20.0 is not of type 'integer'"),
    ("search_traces", '{"errors_only": "yes"}', "is not of type 'boolean'"),
    ("search_traces", '{"scores": [{"evaluator": "correct", "min": 1, "max": 0}]}', "min is greater than max"),
    ("search_traces", '{"scores": [{"min": 1}]}', "'evaluator' is a required property"),
    ("search_traces", '{"min_cost": 2, "max_cost": 1}', "min_cost is greater than max_cost"),
    ("search_traces", '{"from": "yesterday"}', "not an ISO 8601 time"),
    ("search_traces", '{"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"}',
     "is outside the report's window"),
    ("search_traces", '{"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}', "must end after it starts"),
    ("read_trace", "{}", "'trace_id' is a required property"),
    ("score_stats", '{"group_by": "project"}', "argument group_by: 'project' is not one of"),
    ("compare", '{"measure": "score", "a": {}, "b": {"route": "chat"}}', "evaluator: required"),
    ("compare", '{"measure": "cost", "a": {}, "b": {}}', "a and b are the same"),
    ("compare", '{"measure": "cost", "a": {"project": 2}, "b": {}}', "unknown argument 'project' in a"),
    ("portal_usage", '{"group_by": "key_hash"}', "is not one of"),
    ("portal_usage", '{"route": "chat\\u0000"}', "argument route: a NUL character"),
    ("search_traces", '{"min_cost": NaN}', "not valid JSON"),
    ("search_traces", '{"scores": [{"evaluator": "correct", "min": 1e999}]}', "argument scores[0].min: a NUL"),
])
def test_bad_calls_are_error_results_the_model_can_fix(world: World, name: str, raw: str, message: str) -> None:
    out = call(world.ctx(), name, raw)
    assert message in out.error, out.error
    assert out.trace_ids == [] and json.loads(out.text) == {"error": out.error}


def test_no_langfuse_or_langfuse_down_is_an_error_result(world: World) -> None:
    ctx = world.ctx(max_retries=0)
    no_langfuse = ToolContext(ctx.project, ctx.window_start, ctx.window_end, None)
    assert "no Langfuse connection" in call(no_langfuse, "search_traces", None).error
    assert call(no_langfuse, "portal_usage", None).error == ""  # the portal's own data needs none
    world.server.inject("GET", "/api/public/traces", status=503, times=5, retry_after=None)
    assert call(ctx, "search_traces", "").error.startswith("Langfuse: Langfuse answered 503")


def test_an_unexpected_failure_is_logged_not_raised(world: World, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("internal detail /etc/secret")
    monkeypatch.setattr(trace_tools, "usage_by_trace", broken)
    out = call(world.ctx(), "search_traces", {})
    assert out.error == "the tool failed" and "secret" not in out.text
    assert "agent tool search_traces failed" in caplog.text


def objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for value in node.values():
            yield from objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects(value)


GARBAGE: list[Any] = [None, -1, 0, 10**15, 1.5, True, "", "x" * 300, "2026-13-45T00:00:00", [], [1], {}, {"a": 1},
                      "\u202e", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]


def test_no_argument_value_makes_a_tool_fail(world: World) -> None:
    """Every argument of every tool with values of every wrong kind: a clear error or a result, never
    'the tool failed' (an exception in the tool)."""
    ctx = world.ctx()
    required = {"read_trace": {"trace_id": world.ids["plain"][0]}, "compare": {"measure": "errors", "a": {},
                                                                              "b": {"route": "chat"}},
                "langfuse_metrics": {"view": "observations", "metrics": [{"measure": "count",
                                                                          "aggregation": "count"}]}}
    for spec in specs():
        name = spec["function"]["name"]
        for argument in spec["function"]["parameters"]["properties"]:
            for value in GARBAGE:
                out = call(ctx, name, {**required.get(name, {}), argument: value})
                assert out.error != "the tool failed", (name, argument, value)
                assert len(out.text) <= tools.MAX_RESULT_CHARS


def test_a_result_without_rows_to_drop_is_shortened_to_fit() -> None:
    big = tools.base.result({"trace": {"id": "t1", "input": "x" * 20_000, "tags": ["y" * 3000] * 5}})
    assert len(big.text) <= tools.MAX_RESULT_CHARS and big.truncated and json.loads(big.text) == big.data
    assert big.trace_ids == ["t1"] and big.data["trace"]["input"].endswith("…")


def test_specs_are_strict_function_tools() -> None:
    names = []
    for spec in specs():
        assert spec["type"] == "function"
        function = spec["function"]
        names.append(function["name"])
        assert function["description"] and function["parameters"]["type"] == "object"
        assert all(o["additionalProperties"] is False for o in objects(function["parameters"]))
        assert "project" not in json.dumps(function["parameters"]["properties"])
    assert names == ["search_traces", "read_trace", "score_stats", "compare", "langfuse_metrics", "portal_usage"]


def test_a_v3_langfuse_server_is_searched_and_read_too(acme: Tenant) -> None:
    """Self-hosted Langfuse v3: the same tools (errors then come from the gateway's records only, and say so)."""
    end = timezone.now() + dt.timedelta(minutes=1)
    with LangfuseStandin(version=3) as server:
        server.add_project("lf-v3", "v3", "pk-lf-v3", "sk-lf-v3")
        quoted = put_trace(server, "lf-v3", end - dt.timedelta(minutes=30), answer='He said "use the reset link".')
        failing = put_trace(server, "lf-v3", end - dt.timedelta(minutes=20), level="ERROR")
        usage(acme, failing, end - dt.timedelta(minutes=20), status="failure", error_class="Timeout")
        with LangfuseClient(server.url, "pk-lf-v3", "sk-lf-v3", backoff=0.01, timeout=5) as client:
            ctx = ToolContext(acme.project, end - dt.timedelta(hours=1), end, client)
            assert ids(ok(ctx, "search_traces", {"text": 'said "use the'})) == {quoted}
            errors = ok(ctx, "search_traces", {"errors_only": True})
            assert ids(errors) == {failing} and any("gateway's records" in n for n in errors.data["notes"])
            read = ok(ctx, "read_trace", {"trace_id": failing})
            assert [o["level"] for o in read.data["observations"]] == ["DEFAULT", "ERROR"]
            assert read.data["trace"]["has_error"]
            metrics = ok(ctx, "langfuse_metrics", {"view": "observations", "dimensions": ["level"],
                                                   "metrics": [{"measure": "count", "aggregation": "count"}]})
            assert {r["level"]: r["count_count"] for r in metrics.data["rows"]} == {"DEFAULT": 2, "ERROR": 1}
