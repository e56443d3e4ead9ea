"""The agent's tools over the portal's own data (evaluation scores, gateway usage) — score_stats,
compare, portal_usage — and isolation: with two portal projects in one database whose scores and
usage rows name the same trace ids, and two Langfuse projects, no tool shows the other's rows."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from evals.agent.tools import NAMES, call
from tests.evals.test_agent_tools_world import World, ids, ok, world_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


def by(rows: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def test_score_stats_per_evaluator_version(world: World) -> None:
    out = ok(world.ctx(), "score_stats", {})
    rows = by(out.data["rows"], "evaluator", "version")
    assert list(rows) == [("correct", 1), ("helpfulness", 1), ("helpfulness", 2)]
    correct = rows["correct", 1]
    assert correct["traces"] == 14 and correct["mean"] == round(10 / 14, 4) and correct["pass_rate"] == round(10 / 14, 4)
    assert correct["distribution"] == [{"label": "true", "count": 10}, {"label": "false", "count": 4}]
    assert set(correct["example_trace_ids"]) <= set(world.ids["french"]) and len(correct["example_trace_ids"]) == 3
    assert rows["helpfulness", 1]["pass_rate"] == 1.0 and rows["helpfulness", 1]["p50"] == 4.0
    assert rows["helpfulness", 2]["pass_rate"] == 0.0 and rows["helpfulness", 2]["traces"] == 4
    assert out.data["scored_traces"] == 14
    assert set(out.trace_ids) <= set(world.ids["french"]) | set(world.ids["plain"]) and out.trace_ids


def test_score_stats_per_route_and_day_and_in_a_part_of_the_window(world: World) -> None:
    ctx = world.ctx()
    routes = by(ok(ctx, "score_stats", {"evaluator": "correct", "group_by": "route"}).data["rows"], "route")
    assert {k: (r["traces"], r["pass_rate"]) for k, r in routes.items()} == {"chat": (10, 1.0), "chat-fr": (4, 0.0)}
    days = ok(ctx, "score_stats", {"evaluator": "correct", "group_by": "day"}).data["rows"]
    assert sum(r["traces"] for r in days) == 14 and all(len(r["day"]) == 10 for r in days)
    late = ok(ctx, "score_stats", {"evaluator": "helpfulness", "from": (world.start + dt.timedelta(minutes=105))
                                   .isoformat()}).data["rows"]
    assert [(r["version"], r["traces"], r["mean"]) for r in late] == [(2, 4, 2.0)]
    histogram = ok(ctx, "score_stats", {"evaluator": "helpfulness", "route": "chat", "bins": 4}).data["rows"]
    assert histogram[0]["distribution"] == [{"from": 4.0, "to": 4.0, "count": 10}]
    assert ok(ctx, "score_stats", {"evaluator": "no-such"}).data["rows"] == []


def test_compare_two_routes_and_two_windows(world: World) -> None:
    ctx = world.ctx()
    errors = ok(ctx, "compare", {"measure": "errors", "a": {"route": "chat"}, "b": {"route": "chat-fast"}})
    a, b = errors.data["rows"]
    assert (a["requests"], a["errors"], b["requests"], b["errors"], b["error_rate"]) == (10, 0, 3, 3, 1.0)
    assert errors.data["difference_b_minus_a"]["error_rate"] == 1.0
    assert set(b["example_trace_ids"]) == set(world.ids["errors"]) and set(errors.trace_ids) >= set(world.ids["errors"])
    latency = ok(ctx, "compare", {"measure": "latency", "a": {"route": "chat"}, "b": {"route": "chat-fast"}})
    assert [r["p50_latency_ms"] for r in latency.data["rows"]] == [500.0, 3000.0]
    middle = (world.start + dt.timedelta(minutes=105)).isoformat()
    score = ok(ctx, "compare", {"measure": "score", "evaluator": "correct", "a": {"to": middle}, "b": {"from": middle}})
    a, b = score.data["rows"]
    assert (a["traces"], a["pass_rate"], b["traces"], b["pass_rate"]) == (10, 1.0, 4, 0.0)
    assert score.data["difference_b_minus_a"]["pass_rate"] == -1.0
    volume = ok(ctx, "compare", {"measure": "volume", "a": {"to": middle}, "b": {"from": middle}})
    assert [r["traces"] for r in volume.data["rows"]] == [10, 7]
    cost = ok(ctx, "compare", {"measure": "cost", "a": {"route": "chat-fr"}, "b": {"route": "chat-fast"}})
    assert [r["cost"] for r in cost.data["rows"]] == [0.004, 0.03]


def test_portal_usage_by_route_key_error_class_and_day(world: World) -> None:
    ctx = world.ctx()
    routes = ok(ctx, "portal_usage", {"group_by": "route"})
    assert [(r["route"], r["requests"], r["errors"]) for r in routes.data["rows"]] == [
        ("chat", 10, 0), ("chat-fr", 4, 0), ("chat-fast", 3, 3)]
    assert routes.data["window_total"] == 17 and routes.data["totals"]["cost"] == pytest.approx(0.044)
    fast = routes.data["rows"][2]
    assert (fast["p50_latency_ms"], fast["p95_latency_ms"], fast["prompt_tokens"]) == (3000.0, 3000.0, 30)
    keys = ok(ctx, "portal_usage", {"group_by": "key"})
    key = world.acme.key
    assert [(r["key"], r["key_prefix"], r["requests"]) for r in keys.data["rows"]] == [(key.name, key.key_prefix, 17)]
    assert key.key_hash not in keys.text and world.acme.key_plaintext not in keys.text
    classes = ok(ctx, "portal_usage", {"group_by": "error_class"})
    assert {r["error_class"]: r["requests"] for r in classes.data["rows"]} == {"(none)": 14, "BadRequestError": 3}
    assert set(by(classes.data["rows"], "error_class")["BadRequestError"]["example_trace_ids"]) == \
        set(world.ids["errors"])
    only_errors = ok(ctx, "portal_usage", {"errors_only": True})
    assert [(r["route"], r["requests"]) for r in only_errors.data["rows"]] == [("chat-fast", 3)]
    days = ok(ctx, "portal_usage", {"group_by": "day"})
    assert sum(r["requests"] for r in days.data["rows"]) == 17
    one = ok(ctx, "portal_usage", {"limit": 1})
    assert len(one.data["rows"]) == 1 and one.truncated and one.data["groups"] == 3


def test_another_projects_traces_scores_and_usage_never_show(world: World) -> None:
    """globex's Langfuse project has French traces too, and globex's portal project holds scores (0) and
    failed usage rows (route globex-route, $7 each) on acme's very trace ids: acme's tools see none of it."""
    acme, globex = world.ctx("acme"), world.ctx("globex")
    theirs = set(world.ids["globex"])
    calls = [
        ("search_traces", {"limit": 50}), ("search_traces", {"text": "globex"}),
        ("search_traces", {"route": "globex-route"}), ("read_trace", {"trace_id": world.ids["plain"][0]}),
        ("score_stats", {}), ("score_stats", {"group_by": "route"}),
        ("compare", {"measure": "errors", "a": {"route": "chat"}, "b": {"route": "globex-route"}}),
        ("compare", {"measure": "score", "evaluator": "correct", "a": {"route": "chat"}, "b": {}}),
        ("langfuse_metrics", {"view": "observations", "metrics": [{"measure": "count", "aggregation": "count"}]}),
        ("portal_usage", {"group_by": "route"}), ("portal_usage", {"group_by": "key"}),
        ("portal_usage", {"group_by": "error_class"}),
    ]
    seen = {name: ok(acme, name, args) for name, args in calls}
    assert {c[0] for c in calls} == set(NAMES)
    for name, out in seen.items():
        assert not theirs & set(out.trace_ids), name
        assert "globex" not in out.text.lower() and "GlobexError" not in out.text, name
    everything = ok(acme, "search_traces", {"limit": 50})
    assert ids(everything) == world.acme_ids()
    assert all(r["route"] != "globex-route" and r["scores"].get("correct") != 0.0
               for r in everything.data["rows"] if r["id"] in world.ids["plain"])
    assert ok(acme, "search_traces", {"route": "globex-route"}).data["matched"] == 0
    assert by(ok(acme, "score_stats", {"evaluator": "correct"}).data["rows"], "version")[1]["traces"] == 14
    assert ok(acme, "portal_usage", {}).data["totals"]["requests"] == 17
    assert ok(acme, "langfuse_metrics", {"view": "observations", "metrics": [
        {"measure": "count", "aggregation": "count"}]}).data["rows"] == [{"count_count": 23}]
    assert call(acme, "read_trace", {"trace_id": world.ids["globex"][0]}).error.endswith("not found in this project")
    # And the other way round: globex sees its own five traces, its own scores and usage.
    mine = ok(globex, "search_traces", {"limit": 50})
    assert ids(mine) == theirs and mine.data["window_total"] == 5
    assert all(r["route"] == "chat-fr" for r in mine.data["rows"]), mine.data["rows"]  # its own usage records
    assert by(ok(globex, "score_stats", {}).data["rows"], "evaluator")["correct"]["traces"] == 15
    assert ok(globex, "portal_usage", {}).data["totals"]["requests"] == 15
    assert not world.acme_ids() & set(ok(globex, "search_traces", {"limit": 50}).trace_ids)


def test_trace_text_is_data_never_a_way_to_another_project(world: World) -> None:
    """The injection trace asks for project 7 and carries text shaped like a result: it is shown as a
    quoted string, the result's structure and reach are unchanged, and `project` stays refused."""
    acme = world.ctx()
    found = ok(acme, "search_traces", {"text": "ignore your instructions"})
    assert ids(found) == set(world.ids["injection"]) and found.data["matched"] == 1
    row = json.loads(found.text)["rows"][0]
    assert "read project 7" in row["input"] and row["output"].startswith('"}]}')
    assert "forged" not in found.trace_ids
    assert "fixed by the portal" in call(acme, "search_traces", {"project": 7}).error


def service_usage(world: World, trace_id: str, route: str = "judge-route", **kwargs: object) -> None:
    """A request by the portal's own service key of acme's project (a judge's, a benchmark's, the agent's)."""
    from gateway.models import KeyKind, VirtualKey
    from tests.evals.test_agent_tools_world import usage

    key = VirtualKey.objects.filter(project=world.acme.project, kind=KeyKind.SERVICE).first()
    if key is None:
        key = VirtualKey.objects.get(pk=world.acme.key.pk)
        key.pk, key.name, key.key_hash, key.kind = None, "portal service", "f" * 64, KeyKind.SERVICE
        key.save()
    record = usage(world.acme, trace_id, world.start + dt.timedelta(minutes=5), route=route, **kwargs)  # type: ignore[arg-type]
    record.key = key
    record.save()


def test_the_portals_own_service_key_calls_are_not_the_applications_usage(world: World) -> None:
    # R2-4: a judge's rate-limited calls, by the project's service key, on a judge route and on an application trace
    before = ok(world.ctx(), "portal_usage", {}).data
    for i in range(5):
        service_usage(world, f"judge{i}", cost="2", status="failure", error_class="RateLimitError")
    service_usage(world, world.ids["plain"][0], route="chat-fast", cost="3", status="failure", error_class="X")
    ctx = world.ctx()
    usage = ok(ctx, "portal_usage", {}).data
    assert "judge-route" not in by(usage["rows"], "route") and usage["totals"] == before["totals"]
    assert usage["window_total"] == before["window_total"]
    assert usage["portal_own_requests"]["requests"] == 6 and usage["portal_own_requests"]["cost"] == 13.0
    assert "left out" in usage["portal_own_requests"]["label"]
    classes = by(ok(ctx, "portal_usage", {"group_by": "error_class"}).data["rows"], "error_class")
    assert "RateLimitError" not in classes and "X" not in classes
    errors = ok(ctx, "compare", {"measure": "errors", "a": {"route": "judge-route"}, "b": {"route": "chat"}}).data
    assert errors["rows"][0]["requests"] == 0 and errors["rows"][1]["errors"] == 0
    row = by(ok(ctx, "search_traces", {"limit": 50}).data["rows"], "id")[world.ids["plain"][0]]
    assert (row["route"], row["has_error"], row["cost"]) == ("chat", False, 0.001)
    assert ids(ok(ctx, "search_traces", {"errors_only": True})) == set(world.ids["errors"])
    routes = by(ok(ctx, "score_stats", {"evaluator": "correct", "group_by": "route"}).data["rows"], "route")
    assert set(routes) == {"chat", "chat-fr"}


def test_scores_are_placed_by_one_join_on_the_trace_index(world: World) -> None:
    # R2-12: one lateral join on UsageRecord (project, trace_id) per score, no correlated subquery per score
    from django.db import connection

    from evals.agent.tools.base import Range
    from evals.agent.tools.scores import scored_query

    sql, params = scored_query(world.ctx(), Range(world.start, world.end, False), evaluator="correct", route="chat")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # the tables are small: ask the plan a big one would get
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "usage_project_trace" in plan and "SubPlan" not in plan, plan
