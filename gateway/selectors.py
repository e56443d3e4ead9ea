"""Reads of usage, for the API and the web pages (from the daily rollups), scoped by
`visible_to`: a member's report counts only its teams' and its own keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet, Sum

from gateway import latency
from gateway.models import UsageDaily, UsageProjectDaily, VirtualKey
from portal.access import Actor
from portal.models import Project, Team
from portal.scoping import TenantManager

GROUPS = {"day": "day", "route": "route", "key": "key_id", "project": "project_id", "team": "team_id",
          "user": "owner_email"}


KEYLESS_GROUPS = ("day", "route", "project", "team")
REPORT_SUMS = {"requests": Sum("requests"), "errors": Sum("errors"), "prompt_tokens": Sum("prompt_tokens"),
               "completion_tokens": Sum("completion_tokens"), "cost": Sum("cost"), "latency": Sum("latency_ms_sum")}


def _report_row(group: Any, row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row.get("requests") or 0)
    return {"group": group, "requests": requests, "errors": int(row.get("errors") or 0),
            "prompt_tokens": int(row.get("prompt_tokens") or 0),
            "completion_tokens": int(row.get("completion_tokens") or 0), "cost": float(row.get("cost") or 0),
            "avg_latency_ms": round(float(row.get("latency") or 0) / requests, 1) if requests else 0.0}


def summarize(rows: QuerySet[Any], group_field: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows summed per group, and the totals (summed from the groups: one query)."""
    groups = list(rows.values(group_field).annotate(**REPORT_SUMS).order_by())
    totals = {name: sum(g[name] or 0 for g in groups) for name in REPORT_SUMS}
    return [_report_row(g[group_field], g) for g in groups], _report_row(None, totals)


def report_rows(actor: Actor, params: dict[str, Any]) -> QuerySet[Any]:
    """The rollup rows a usage report reads, as far as the actor sees them: the rollup without keys
    when it can answer (for those who see every team, not by key or user), the per-key rows otherwise."""
    keyless = actor.sees_every_team() and params["group_by"] in KEYLESS_GROUPS and "key" not in params
    model: type[UsageProjectDaily] | type[UsageDaily] = UsageProjectDaily if keyless else UsageDaily
    rows = model.objects.visible_to(actor, "view").filter(day__gte=params["from"], day__lte=params["to"])
    for name in ("team", "project", "key", "route"):
        if name in params:
            rows = rows.filter(**{GROUPS[name]: params[name]})
    return rows


def labels(actor: Actor, group_by: str, groups: list[Any]) -> dict[Any, str]:
    managers: dict[str, TenantManager[Any]] = {"key": VirtualKey.objects, "project": Project.objects,
                                               "team": Team.objects}
    manager = managers.get(group_by)
    if manager is None:
        return {g: str(g) for g in groups}
    return dict(manager.visible_to(actor, "view").filter(pk__in=groups).values_list("pk", "name"))


def usage_report(actor: Actor, params: dict[str, Any]) -> dict[str, Any]:
    """Usage of the rows the actor sees (UsageDaily's rule: a member sees its teams' and its own keys')."""
    group_by = params["group_by"]
    results, totals = summarize(report_rows(actor, params), GROUPS[group_by])
    results.sort(key=lambda r: (r["group"] is None, r["group"]))
    if group_by != "day":
        results.sort(key=lambda r: -r["cost"])
    names = labels(actor, group_by, [r["group"] for r in results])
    for r in results:
        r["label"] = names.get(r["group"], str(r["group"]))
        r["group"] = r["group"].isoformat() if isinstance(r["group"], dt.date) else r["group"]
    return {"group_by": group_by, "from": params["from"], "to": params["to"], "results": results,
            "totals": totals | {"label": "total"}}


def daily_series(actor: Actor, days: int = 30) -> list[tuple[str, dict[str, Any]]]:
    """One row per day (missing days as zero), oldest first."""
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    report = usage_report(actor, {"group_by": "day", "from": start, "to": today})
    by_day = {r["group"]: r for r in report["results"]}
    zero = {"requests": 0, "errors": 0, "cost": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
    return [((start + dt.timedelta(days=i)).isoformat(), by_day.get((start + dt.timedelta(days=i)).isoformat(), zero))
            for i in range(days)]


# The project dashboard and per-key usage (percentiles from the rollups' latency histograms).

STAT_SUMS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", *latency.FIELDS)


def _sums() -> dict[str, Sum]:
    return {f"s_{f}": Sum(f) for f in STAT_SUMS}


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every dashboard row has, from a row of `_sums()`."""
    requests, errors = int(row.get("s_requests") or 0), int(row.get("s_errors") or 0)
    counts = latency.counts_of(row, "s_")
    return {"requests": requests, "errors": errors, "error_rate": round(errors / requests, 4) if requests else 0.0,
            "prompt_tokens": int(row.get("s_prompt_tokens") or 0),
            "completion_tokens": int(row.get("s_completion_tokens") or 0), "cost": float(row.get("s_cost") or 0),
            "p50_ms": latency.percentile(counts, 0.5), "p95_ms": latency.percentile(counts, 0.95)}


def _per_day(rows: QuerySet[Any], start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """One row per day from `start` to `end` (days without usage too), oldest first."""
    by_day = {r["day"]: r for r in rows.values("day").annotate(**_sums()).order_by()}
    days = []
    for i in range((end - start).days + 1):
        day = start + dt.timedelta(days=i)
        days.append({"day": day.isoformat(), **_stats(by_day.get(day, {}))})
    return days


def _project_rows(actor: Actor, project: Project, start: dt.date, end: dt.date) -> QuerySet[Any]:
    """The rollup rows of a project the actor sees: the keyless rollup for those who see every team,
    the per-key rows (of their teams' and their own keys) for members."""
    model: type[UsageProjectDaily] | type[UsageDaily] = (
        UsageProjectDaily if actor.sees_every_team() else UsageDaily)
    return model.objects.visible_to(actor, "view").filter(project_id=project.pk, day__gte=start, day__lte=end)


def project_dashboard(actor: Actor, project: Project, *, start: dt.date, end: dt.date) -> dict[str, Any]:
    """A project's usage from `start` to `end` (UTC days, inclusive), as far as the actor sees it.

    Every row has `requests`, `errors`, `error_rate` (0 to 1), `prompt_tokens`, `completion_tokens`,
    `cost` (USD, float), `p50_ms` and `p95_ms` (None when there was no request; read from the latency
    histograms, see gateway/latency.py for the error bound). `days`: one row per day ("day": ISO date),
    days without usage included, oldest first; `routes`: one row per route ("route"), by cost, highest
    first; `top_keys`: up to 10 `{"key_id", "name", "requests", "cost"}` by cost; `totals`: the window."""
    if start > end:
        raise ValueError("start must not be after end")
    rows = _project_rows(actor, project, start, end)
    routes = [{"route": r["route"], **_stats(r)} for r in rows.values("route").annotate(**_sums()).order_by()]
    routes.sort(key=lambda r: (-r["cost"], r["route"]))
    keys = (UsageDaily.objects.visible_to(actor, "view")
            .filter(project_id=project.pk, day__gte=start, day__lte=end)
            .values("key_id").annotate(requests=Sum("requests"), cost=Sum("cost")).order_by("-cost", "key_id")[:10])
    top = list(keys)
    names = dict(VirtualKey.objects.visible_to(actor, "view").filter(pk__in=[k["key_id"] for k in top])
                 .values_list("pk", "name"))
    top_keys = [{"key_id": k["key_id"], "name": names.get(k["key_id"], f"key {k['key_id']}"),
                 "requests": int(k["requests"] or 0), "cost": float(k["cost"] or 0)} for k in top]
    return {"days": _per_day(rows, start, end), "routes": routes, "top_keys": top_keys,
            "totals": _stats(rows.aggregate(**_sums()))}


def key_usage(actor: Actor, key: VirtualKey, *, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """A key's usage per day from `start` to `end` (UTC, inclusive; every day, oldest first), with the
    fields of `project_dashboard`'s rows; nothing when the actor may not see the key's usage."""
    if start > end:
        raise ValueError("start must not be after end")
    rows = UsageDaily.objects.visible_to(actor, "view").filter(key_id=key.pk, day__gte=start, day__lte=end)
    return _per_day(rows, start, end)
