"""score_stats and compare: the portal's evaluation scores of the project (EvalScore, status scored)
and its gateway requests, per evaluator version, route or day, and two windows or routes side by side.
A score's time and route are its trace's request's (the usage record of the same trace in this
project); a trace that did not go through the gateway is placed at the time it was scored."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django.db import connection

from evals.agent.tools.base import (
    TIME,
    Range,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    result,
    schema,
    time_range,
)
from evals.agent.tools.usage import FAILED, service_keys, usage_records, usage_stats
from evals.judge import ScoreSpec
from evals.models import EvalScore, Evaluator, EvaluatorVersion, ScoreStatus
from gateway.models import UsageRecord

MAX_SCORES = 50_000  # score rows read for one call
EXAMPLES = 3  # the lowest-scoring (or failing) traces per row
GROUPS = ("evaluator_version", "route", "day")
EVALUATOR = {"type": "string", "minLength": 1, "maxLength": 100, "description": "The evaluator's name."}
ROUTE = {"type": "string", "minLength": 1, "maxLength": 100, "description": "The portal's public route name."}


# A score's trace is placed at its first gateway request of the project (its time and route), found by
# one lateral join on the (project, trace_id) index per score; without one, at the time it was scored.
# The portal's own requests (service keys) are not the application's: they place nothing.
SCORED_SQL = """
SELECT s.trace_id, s.evaluator_version_id, s.value, s.label,
       COALESCE(u.created_at, s.scored_at) AS trace_time, u.route AS trace_route
FROM {score} s
JOIN {version} v ON v.id = s.evaluator_version_id
JOIN {evaluator} e ON e.id = v.evaluator_id
LEFT JOIN LATERAL (
    SELECT r.created_at, r.route FROM {usage} r
    WHERE r.project_id = s.project_id AND r.trace_id = s.trace_id
      AND r.key_id <> ALL(%(service_keys)s)
    ORDER BY r.created_at LIMIT 1
) u ON TRUE
WHERE s.project_id = %(project)s AND s.status = %(scored)s
  AND COALESCE(u.created_at, s.scored_at) >= %(start)s AND COALESCE(u.created_at, s.scored_at) < %(end)s
  {conditions}
ORDER BY s.id
LIMIT %(limit)s
"""


def scored_query(ctx: ToolContext, span: Range, *, evaluator: str | None = None, route: str | None = None,
                 limit: int = MAX_SCORES + 1) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of this project's scored evaluations whose trace falls in `span` (and `route`)."""
    conditions = (" AND e.name = %(evaluator)s" if evaluator else "") + (" AND u.route = %(route)s" if route else "")
    sql = SCORED_SQL.format(score=EvalScore._meta.db_table, version=EvaluatorVersion._meta.db_table,
                            evaluator=Evaluator._meta.db_table, usage=UsageRecord._meta.db_table,
                            conditions=conditions)
    params = {"service_keys": list(service_keys(ctx).values_list("pk", flat=True)),
              "project": ctx.project.pk, "scored": ScoreStatus.SCORED.value, "start": span.start, "end": span.end,
              "evaluator": evaluator, "route": route, "limit": limit}
    return sql, params


def read_scores(ctx: ToolContext, span: Range, *, evaluator: str | None = None, route: str | None = None
                ) -> tuple[list[dict[str, Any]], bool]:
    """At most MAX_SCORES of them (trace_id, evaluator_version_id, value, label, trace_time, trace_route),
    and whether there were more."""
    sql, params = scored_query(ctx, span, evaluator=evaluator, route=route)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c.name for c in cursor.description]
        values = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return values[:MAX_SCORES], len(values) > MAX_SCORES


def percentile(ordered: list[float], fraction: float) -> float:
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(scores: list[dict[str, Any]], versions: dict[int, EvaluatorVersion], bins: int = 10) -> dict[str, Any]:
    """Count, mean, quantiles, a distribution and the pass rate of these scores."""
    values = sorted(s["value"] for s in scores if s["value"] is not None)
    out: dict[str, Any] = {"traces": len({s["trace_id"] for s in scores}), "scores": len(scores)}
    if values:
        out |= {"mean": round(sum(values) / len(values), 4), "min": values[0], "max": values[-1],
                "p10": round(percentile(values, 0.1), 4), "p50": round(percentile(values, 0.5), 4),
                "p90": round(percentile(values, 0.9), 4)}
    out["distribution"] = distribution(scores, values, bins)
    verdicts = [v for s in scores if (v := ScoreSpec.of(versions[s["evaluator_version_id"]]).passed(
        s["value"], s["label"])) is not None]
    out["pass_rate"] = round(sum(verdicts) / len(verdicts), 4) if verdicts else None
    failing = [s for s in scores if ScoreSpec.of(versions[s["evaluator_version_id"]]).passed(s["value"], s["label"])
               is False]
    lowest = failing or sorted((s for s in scores if s["value"] is not None), key=lambda s: s["value"])
    out["example_trace_ids"] = list(dict.fromkeys(s["trace_id"] for s in lowest))[:EXAMPLES]
    return out


def distribution(scores: list[dict[str, Any]], values: list[float], bins: int) -> list[dict[str, Any]]:
    labels = [s["label"] for s in scores if s["label"]]
    if labels and len(set(labels)) <= 20 and (not values or len(set(values)) <= 2):
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        return [{"label": k, "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    if not values:
        return []
    low, high = values[0], values[-1]
    if low == high:
        return [{"from": low, "to": high, "count": len(values)}]
    width = (high - low) / bins
    counts_by_bin = [0] * bins
    for value in values:
        counts_by_bin[min(bins - 1, int((value - low) / width))] += 1
    return [{"from": round(low + i * width, 4), "to": round(low + (i + 1) * width, 4), "count": c}
            for i, c in enumerate(counts_by_bin)]


def versions_of(ctx: ToolContext, scores: Iterable[dict[str, Any]]) -> dict[int, EvaluatorVersion]:
    ids = {s["evaluator_version_id"] for s in scores}
    return {v.pk: v for v in EvaluatorVersion.objects.filter(evaluator__project=ctx.project, pk__in=ids)
            .select_related("evaluator")}


# score_stats ---------------------------------------------------------

STATS_SCHEMA = schema({
    "evaluator": EVALUATOR, "route": ROUTE, "from": TIME, "to": TIME,
    "group_by": {"enum": list(GROUPS), "description": "Rows per evaluator version (default), route or day."},
    "bins": {"type": "integer", "minimum": 2, "maximum": 20, "description": "Histogram bins (default 10)."},
})


def score_stats(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    span = time_range(ctx, args)
    scores, cut = read_scores(ctx, span, evaluator=args.get("evaluator"), route=args.get("route"))
    versions = versions_of(ctx, scores)
    group = args.get("group_by", "evaluator_version")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for s in scores:
        version = versions[s["evaluator_version_id"]]
        if group == "evaluator_version":
            key: tuple[Any, ...] = (version.evaluator.name, version.version)
        elif group == "route":
            key = (version.evaluator.name, s["trace_route"] or "(no gateway request)")
        else:
            key = (version.evaluator.name, s["trace_time"].date().isoformat())
        groups.setdefault(key, []).append(s)
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(p) for p in k)):
        label = {"evaluator_version": "version", "route": "route", "day": "day"}[group]
        rows.append({"evaluator": key[0], label: key[1]} | summary(groups[key], versions, args.get("bins", 10)))
    notes = [f"only the first {len(scores)} scores were read"] if cut else []
    if not scores:
        notes.append("no scored evaluations in this range" + (" for this evaluator" if args.get("evaluator") else ""))
    data = {"range": span.describe(), "group_by": group, "scored_traces": len({s["trace_id"] for s in scores}),
            "rows": rows, "source": "the portal's evaluation scores (status scored)"}
    return result(data, truncated=cut, notes=notes, id_key="")


# compare -------------------------------------------------------------

MEASURES = ("score", "latency", "cost", "errors", "volume")
SIDE = schema({"from": TIME, "to": TIME, "route": ROUTE})
COMPARE_SCHEMA = schema({
    "measure": {"enum": list(MEASURES)}, "evaluator": EVALUATOR | {"description": "Required for measure=score."},
    "a": SIDE | {"description": "The first window and/or route (default: the whole window, every route)."},
    "b": SIDE | {"description": "The second window and/or route."},
}, ("measure", "a", "b"))


def compare(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    measure = args["measure"]
    if measure == "score" and not args.get("evaluator"):
        raise ToolError("argument evaluator: required when measure is score")
    sides = []
    for name in ("a", "b"):
        side = args[name]
        sides.append((name, time_range(ctx, side, where=f"{name}."), side.get("route")))
    if (sides[0][1].start, sides[0][1].end, sides[0][2]) == (sides[1][1].start, sides[1][1].end, sides[1][2]):
        raise ToolError("a and b are the same: give them different windows or routes")
    rows = [side_row(ctx, measure, args.get("evaluator"), *side) for side in sides]
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float) and not isinstance(rows[0][k], bool)]
    difference = {k: round(rows[1][k] - rows[0][k], 6) for k in keys
                  if rows[1].get(k) is not None and rows[0].get(k) is not None}
    data = {"measure": measure, "rows": rows, "difference_b_minus_a": difference,
            "source": "the portal's evaluation scores" if measure == "score" else "the portal's gateway requests"}
    return result(data, id_key="")


def side_row(ctx: ToolContext, measure: str, evaluator: str | None, name: str, span: Range, route: str | None
             ) -> dict[str, Any]:
    row: dict[str, Any] = {"side": name, **span.describe(), "route": route}
    if measure == "score":
        scores, cut = read_scores(ctx, span, evaluator=evaluator, route=route)
        stats = summary(scores, versions_of(ctx, scores))
        stats.pop("distribution")
        return row | stats | ({"truncated": True} if cut else {})
    records = usage_records(ctx, span, route)
    stats = usage_stats(records)
    order = {"latency": "-latency_ms", "cost": "-cost", "errors": "-created_at", "volume": "-created_at"}[measure]
    examples = records.filter(FAILED) if measure == "errors" else records
    stats["example_trace_ids"] = list(examples.exclude(trace_id="").order_by(order)
                                      .values_list("trace_id", flat=True)[:EXAMPLES])
    stats["mean_cost"] = round(stats["cost"] / stats["requests"], 9) if stats["requests"] else None
    return row | stats


TOOLS = [
    Tool("score_stats", "Statistics of the portal's evaluation scores of the project: per evaluator version, route or "
         "day; count, mean, quantiles, a distribution, the pass rate where the evaluator defines passing, and the "
         "lowest-scoring traces.", STATS_SCHEMA, score_stats),
    Tool("compare", "Compare two windows (inside the report's window) or two routes on score, latency, cost, errors "
         "or volume, with the difference b - a.", COMPARE_SCHEMA, compare),
]
