"""Reads of usage, for the API and the web pages (from the daily rollups), scoped by
`visible_to`: a member's report counts only its teams' and its own keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet, Sum

from gateway.models import UsageDaily, VirtualKey
from portal.access import Actor
from portal.models import Project, Team
from portal.scoping import TenantManager

GROUPS = {"day": "day", "route": "route", "key": "key_id", "project": "project_id", "team": "team_id",
          "user": "owner_email"}


def summarize(rows: QuerySet[Any], group_field: str | None) -> list[dict[str, Any]]:
    values = rows.values(group_field) if group_field else rows
    agg = values.annotate(requests_sum=Sum("requests"), errors_sum=Sum("errors"), prompt=Sum("prompt_tokens"),
                          completion=Sum("completion_tokens"), cost_sum=Sum("cost"),
                          latency=Sum("latency_ms_sum")) if group_field else [rows.aggregate(
        requests_sum=Sum("requests"), errors_sum=Sum("errors"), prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"), cost_sum=Sum("cost"), latency=Sum("latency_ms_sum"))]
    out = []
    for row in agg:
        requests = row["requests_sum"] or 0
        out.append({
            "group": row.get(group_field) if group_field else None,
            "requests": requests, "errors": row["errors_sum"] or 0, "prompt_tokens": row["prompt"] or 0,
            "completion_tokens": row["completion"] or 0, "cost": float(row["cost_sum"] or 0),
            "avg_latency_ms": round((row["latency"] or 0) / requests, 1) if requests else 0.0,
        })
    return out


def labels(actor: Actor, group_by: str, groups: list[Any]) -> dict[Any, str]:
    managers: dict[str, TenantManager[Any]] = {"key": VirtualKey.objects, "project": Project.objects,
                                               "team": Team.objects}
    manager = managers.get(group_by)
    if manager is None:
        return {g: str(g) for g in groups}
    return dict(manager.visible_to(actor, "view").filter(pk__in=groups).values_list("pk", "name"))


def usage_report(actor: Actor, params: dict[str, Any]) -> dict[str, Any]:
    """Usage of the rows the actor sees (UsageDaily's rule: a member sees its teams' and its own keys')."""
    rows = UsageDaily.objects.visible_to(actor, "view").filter(day__gte=params["from"], day__lte=params["to"])
    for name in ("team", "project", "key", "route"):
        if name in params:
            rows = rows.filter(**{GROUPS[name] if name != "route" else "route": params[name]})
    group_by = params["group_by"]
    field = GROUPS[group_by]
    results = sorted(summarize(rows, field), key=lambda r: (r["group"] is None, r["group"]))
    if group_by != "day":
        results.sort(key=lambda r: -r["cost"])
    names = labels(actor, group_by, [r["group"] for r in results])
    for r in results:
        r["label"] = names.get(r["group"], str(r["group"]))
        r["group"] = r["group"].isoformat() if isinstance(r["group"], dt.date) else r["group"]
    totals = summarize(rows, None)[0] | {"label": "total"}
    return {"group_by": group_by, "from": params["from"], "to": params["to"], "results": results, "totals": totals}


def daily_series(actor: Actor, days: int = 30) -> list[tuple[str, dict[str, Any]]]:
    """One row per day (missing days as zero), oldest first."""
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    report = usage_report(actor, {"group_by": "day", "from": start, "to": today})
    by_day = {r["group"]: r for r in report["results"]}
    zero = {"requests": 0, "errors": 0, "cost": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    return [((start + dt.timedelta(days=i)).isoformat(), by_day.get((start + dt.timedelta(days=i)).isoformat(), zero))
            for i in range(days)]
