"""portal_usage: the project's requests through the gateway (the portal's UsageRecord rows), grouped by
route, key, day or error class. Keys are shown by name and display prefix, never by hash."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Aggregate, Count, FloatField, Q, QuerySet, Sum
from django.db.models.functions import TruncDay

from evals.agent.tools.base import MAX_ROWS, TIME, Range, Tool, ToolContext, ToolResult, result, schema, time_range
from gateway.models import KeyKind, UsageRecord, VirtualKey

GROUPS = ("route", "key", "day", "error_class")
EXAMPLES = 3  # trace ids per row, to cite or read
PORTAL_OWN = ("the portal's own calls (evaluations, benchmarks, the agent; by its service key): left out of the "
              "rows and totals")


class Percentile(Aggregate):
    """PostgreSQL's `percentile_cont(p) WITHIN GROUP (ORDER BY expression)`."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


FAILED = ~Q(status="success") | ~Q(error_class="")


def service_keys(ctx: ToolContext) -> QuerySet[VirtualKey]:
    """The portal's own keys (judges, benchmarks, the agent): their requests are not the application's."""
    return VirtualKey.objects.filter(organization=ctx.project.organization, kind=KeyKind.SERVICE)


def usage_records(ctx: ToolContext, span: Range, route: str | None = None, *, portal: bool = False
                  ) -> QuerySet[UsageRecord]:
    """The application's requests of the project in `span` (`portal`: the portal's own, by service key)."""
    rows = UsageRecord.objects.filter(project=ctx.project, created_at__gte=span.start, created_at__lt=span.end)
    rows = rows.filter(key__in=service_keys(ctx)) if portal else rows.exclude(key__in=service_keys(ctx))
    return rows.filter(route=route) if route else rows


def usage_stats(rows: QuerySet[UsageRecord]) -> dict[str, Any]:
    """Requests, errors, tokens, cost and latency of these rows, in one query."""
    stats = rows.aggregate(requests=Count("id"), errors=Count("id", filter=FAILED),
                           prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
                           cost=Sum("cost"), p50_latency_ms=Percentile("latency_ms", 0.5),
                           p95_latency_ms=Percentile("latency_ms", 0.95))
    return shaped(stats)


def shaped(stats: dict[str, Any]) -> dict[str, Any]:
    out = dict(stats)
    out["traces"] = out["requests"]
    out["error_rate"] = round(out["errors"] / out["requests"], 4) if out["requests"] else None
    out["cost"] = float(out["cost"] or 0)
    out["prompt_tokens"], out["completion_tokens"] = out["prompt_tokens"] or 0, out["completion_tokens"] or 0
    for key in ("p50_latency_ms", "p95_latency_ms"):
        out[key] = round(out[key], 1) if out[key] is not None else None
    return out


SCHEMA = schema({
    "group_by": {"enum": list(GROUPS), "description": "How to group the requests (default route)."},
    "from": TIME, "to": TIME,
    "route": {"type": "string", "minLength": 1, "maxLength": 100, "description": "Only this public route."},
    "errors_only": {"type": "boolean", "description": "Only failed requests."},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS, "description": "Rows (default 20)."},
})


def portal_usage(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    span = time_range(ctx, args)
    group = args.get("group_by", "route")
    rows = usage_records(ctx, span, args.get("route"))
    if args.get("errors_only"):
        rows = rows.filter(FAILED)
    column = {"route": "route", "key": "key_id", "day": "day", "error_class": "error_class"}[group]
    grouped = rows.annotate(day=TruncDay("created_at")) if group == "day" else rows
    table = list(grouped.values(column).annotate(
        requests=Count("id"), errors=Count("id", filter=FAILED), prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"), cost=Sum("cost"), p50_latency_ms=Percentile("latency_ms", 0.5),
        p95_latency_ms=Percentile("latency_ms", 0.95)).order_by(*(["day"] if group == "day" else ["-requests",
                                                                                                   column])))
    limit = args.get("limit", 20)
    keys = key_names(ctx, [r["key_id"] for r in table[:limit]]) if group == "key" else {}
    out = []
    for row in table[:limit]:
        shown = shaped({k: v for k, v in row.items() if k != column})
        if group == "key":
            shown = keys.get(row["key_id"], {"key": "(deleted key)", "key_prefix": None}) | shown
        elif group == "day":
            shown = {"day": row["day"].date().isoformat()} | shown
        else:
            shown = {group: row[column] or ("(none)" if group == "error_class" else "")} | shown
        examples = rows.filter(**{column: row[column]}) if group != "day" else \
            rows.filter(created_at__gte=row["day"], created_at__lt=row["day"] + dt.timedelta(days=1))
        shown["example_trace_ids"] = list(examples.exclude(trace_id="").order_by("-latency_ms")
                                          .values_list("trace_id", flat=True)[:EXAMPLES])
        out.append(shown)
    total = usage_stats(usage_records(ctx, span, args.get("route")))
    own = usage_records(ctx, span, args.get("route"), portal=True).aggregate(requests=Count("id"), errors=Count("id", filter=FAILED), cost=Sum("cost"))
    data = {"range": span.describe(), "group_by": group, "groups": len(table), "window_total": total["requests"],
            "totals": total, "rows": out, "source": "the portal's gateway request records",
            "portal_own_requests": {"label": PORTAL_OWN, "requests": own["requests"], "errors": own["errors"],
                                    "cost": float(own["cost"] or 0)}}
    notes = [f"{len(table) - limit} more groups not shown"] if len(table) > limit else []
    return result(data, truncated=len(table) > limit, notes=notes)


def key_names(ctx: ToolContext, key_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Name and display prefix of the project's keys (never the hash)."""
    keys = VirtualKey.objects.filter(organization=ctx.project.organization, pk__in=key_ids)
    return {k.pk: {"key": k.name, "key_prefix": k.key_prefix} for k in keys.only("pk", "name", "key_prefix")}


TOOLS = [Tool("portal_usage", "The project's requests through the portal's gateway, grouped by route, key, day or "
              "error class: requests, errors, tokens, cost (USD), p50/p95 latency, and example trace ids.",
              SCHEMA, portal_usage)]
