"""score_stats and compare: the portal's evaluation scores of the project (EvalScore, status scored)
and its gateway requests, per evaluator version, route or day, and two windows or routes side by side.
A score's time and route are its trace's request's (the usage record of the same trace in this
project); a trace that did not go through the gateway is placed at the time it was scored."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django.db.models import F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

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
from evals.agent.tools.usage import FAILED, usage_records, usage_stats
from evals.judge import ScoreSpec
from evals.models import EvalScore, EvaluatorVersion, ScoreStatus
from gateway.models import UsageRecord

MAX_SCORES = 50_000  # score rows read for one call
EXAMPLES = 3  # the lowest-scoring (or failing) traces per row
GROUPS = ("evaluator_version", "route", "day")
EVALUATOR = {"type": "string", "minLength": 1, "maxLength": 100, "description": "The evaluator's name."}
ROUTE = {"type": "string", "minLength": 1, "maxLength": 100, "description": "The portal's public route name."}


def scored(ctx: ToolContext, span: Range, *, evaluator: str | None = None, route: str | None = None
           ) -> QuerySet[EvalScore]:
    """This project's scored evaluations whose trace falls in `span` (and `route`)."""
    request = UsageRecord.objects.filter(project=ctx.project, trace_id=OuterRef("trace_id")).order_by("created_at")
    rows = (EvalScore.objects.filter(project=ctx.project, status=ScoreStatus.SCORED)
            .annotate(trace_time=Coalesce(Subquery(request.values("created_at")[:1]), F("scored_at")),
                      trace_route=Subquery(request.values("route")[:1]))
            .filter(trace_time__gte=span.start, trace_time__lt=span.end))
    if evaluator:
        rows = rows.filter(evaluator_version__evaluator__name=evaluator)
    if route:
        rows = rows.filter(trace_route=route)
    return rows


def read_scores(rows: QuerySet[EvalScore]) -> tuple[list[dict[str, Any]], bool]:
    # trace_time and trace_route are scored()'s annotations, which the stubs cannot see through its return type
    values = list(rows.order_by("id").values(  # type: ignore[misc]
        "trace_id", "evaluator_version_id", "value", "label", "trace_time", "trace_route")[:MAX_SCORES + 1])
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
    scores, cut = read_scores(scored(ctx, span, evaluator=args.get("evaluator"), route=args.get("route")))
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
        scores, cut = read_scores(scored(ctx, span, evaluator=evaluator, route=route))
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
