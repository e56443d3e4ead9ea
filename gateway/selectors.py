"""Reads of usage, for the API and the web pages (from the daily rollups)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Model, Q, QuerySet, Sum

from gateway.models import UsageDaily, VirtualKey
from portal.models import Project, Team

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


def labels(group_by: str, groups: list[Any], organization: Any) -> dict[Any, str]:
    models: dict[str, type[Model]] = {"key": VirtualKey, "project": Project, "team": Team}
    model = models.get(group_by)
    if model is None:
        return {g: str(g) for g in groups}
    return {pk: name for pk, name in model._default_manager.filter(organization=organization, pk__in=groups)
            .values_list("pk", "name")}


def member_keys(actor: Any) -> QuerySet[VirtualKey]:
    """The keys a member sees: its teams' and its own (as `keys_visible_to`
    for members). Decided by `Actor.sees_every_team`, so that a member's
    viewer-level token sees no more than the member."""
    return VirtualKey.objects.filter(organization=actor.organization).filter(
        Q(team_id__in=list(actor.team_roles())) | Q(owner=actor.user))


def usage_report(actor: Any, params: dict[str, Any]) -> dict[str, Any]:
    rows = UsageDaily.objects.filter(organization=actor.organization, day__gte=params["from"], day__lte=params["to"])
    if not actor.sees_every_team():
        rows = rows.filter(key_id__in=member_keys(actor).values("pk"))
    for name in ("team", "project", "key", "route"):
        if name in params:
            rows = rows.filter(**{GROUPS[name] if name != "route" else "route": params[name]})
    group_by = params["group_by"]
    field = GROUPS[group_by]
    results = sorted(summarize(rows, field), key=lambda r: (r["group"] is None, r["group"]))
    if group_by != "day":
        results.sort(key=lambda r: -r["cost"])
    names = labels(group_by, [r["group"] for r in results], actor.organization)
    for r in results:
        r["label"] = names.get(r["group"], str(r["group"]))
        r["group"] = r["group"].isoformat() if isinstance(r["group"], dt.date) else r["group"]
    totals = summarize(rows, None)[0] | {"label": "total"}
    return {"group_by": group_by, "from": params["from"], "to": params["to"], "results": results, "totals": totals}


def daily_series(actor: Any, days: int = 30) -> list[tuple[str, dict[str, Any]]]:
    """One row per day (missing days as zero), oldest first."""
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    report = usage_report(actor, {"group_by": "day", "from": start, "to": today})
    by_day = {r["group"]: r for r in report["results"]}
    zero = {"requests": 0, "errors": 0, "cost": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    return [((start + dt.timedelta(days=i)).isoformat(), by_day.get((start + dt.timedelta(days=i)).isoformat(), zero))
            for i in range(days)]
