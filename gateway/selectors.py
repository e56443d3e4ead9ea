"""Reads of usage, for the API and the web pages (from the daily rollups), scoped by
`visible_to`: a member's report counts only its teams' and its own keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet, Sum

from gateway import latency
from gateway.models import UsageDaily, UsageKeyDaily, UsageProjectDaily, UsageTeamDaily, VirtualKey
from portal.access import Actor
from portal.models import Project, Team
from portal.scoping import TenantManager

GROUPS = {"day": "day", "route": "route", "key": "key_id", "project": "project_id", "team": "team_id",
          "user": "owner_email"}

# The rollups, smallest first, with what they can be grouped and filtered by. The first two sum the
# keys of a team together; a member sees its teams' rows of them (TeamRows), and its own keys in
# other teams from the per-key ones (`sources`).
ROLLUPS: tuple[tuple[type[Any], frozenset[str]], ...] = (
    (UsageTeamDaily, frozenset({"day", "team", "route"})),
    (UsageProjectDaily, frozenset({"day", "team", "route", "project"})),
    (UsageKeyDaily, frozenset({"day", "team", "project", "key", "user"})),
    (UsageDaily, frozenset({"day", "team", "route", "project", "key", "user"})),
)
KEYLESS = (UsageTeamDaily, UsageProjectDaily)


def rollup_for(dimensions: set[str]) -> type[Any]:
    """The smallest rollup that can be grouped and filtered by these dimensions."""
    for model, has in ROLLUPS:
        if dimensions <= has:
            return model
    raise ValueError(f"No rollup has {sorted(dimensions)}")  # pragma: no cover  (UsageDaily has every one)


def sources(actor: Actor, dimensions: set[str], filters: dict[str, Any]) -> list[QuerySet[Any]]:
    """The rollup rows that make up what the actor sees of usage by `dimensions`, narrowed by
    `filters`: one queryset, or, for a member reading a rollup without keys, two that do not
    overlap (its teams' rows; its own keys in other teams, from the smallest per-key rollup).
    Together they are exactly TeamOrOwn's rows of UsageDaily."""
    model = rollup_for(dimensions)
    found = [model.objects.visible_to(actor, "view").filter(**filters)]
    if model in KEYLESS and not actor.sees_every_team():
        # the member's own keys in other teams, by id: usually a handful, whatever the rollup's size
        own = VirtualKey.objects.visible_to(actor, "view").filter(owner=actor.user).exclude(
            team_id__in=list(actor.team_roles()))
        own = own.filter(**{f: filters[f] for f in ("team_id", "project_id") if f in filters})
        per_key = rollup_for(dimensions | {"key"})
        found.append(per_key.objects.visible_to(actor, "view").filter(**filters).filter(
            key_id__in=list(own.values_list("pk", flat=True))))
    return found


def grouped(rows: list[QuerySet[Any]], field: str, sums: dict[str, Sum]) -> dict[Any, dict[str, Any]]:
    """`sums` per value of `field`, over every queryset of `rows`."""
    out: dict[Any, dict[str, Any]] = {}
    for queryset in rows:
        for row in queryset.values(field).annotate(**sums).order_by():
            acc = out.setdefault(row[field], dict.fromkeys(sums, 0))
            for name in sums:
                acc[name] += row[name] or 0
    return out


def total(groups: dict[Any, dict[str, Any]], sums: dict[str, Sum]) -> dict[str, Any]:
    return {name: sum(g[name] for g in groups.values()) for name in sums}


REPORT_SUMS = {"requests": Sum("requests"), "errors": Sum("errors"), "prompt_tokens": Sum("prompt_tokens"),
               "completion_tokens": Sum("completion_tokens"), "cost": Sum("cost"), "latency": Sum("latency_ms_sum")}


def _report_row(group: Any, row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row.get("requests") or 0)
    return {"group": group, "requests": requests, "errors": int(row.get("errors") or 0),
            "prompt_tokens": int(row.get("prompt_tokens") or 0),
            "completion_tokens": int(row.get("completion_tokens") or 0), "cost": float(row.get("cost") or 0),
            "avg_latency_ms": round(float(row.get("latency") or 0) / requests, 1) if requests else 0.0}


def summarize(rows: list[QuerySet[Any]], group_field: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows summed per group, and the totals (summed from the groups)."""
    groups = grouped(rows, group_field, REPORT_SUMS)
    return [_report_row(g, row) for g, row in groups.items()], _report_row(None, total(groups, REPORT_SUMS))


def report_rows(actor: Actor, params: dict[str, Any]) -> list[QuerySet[Any]]:
    """The rollup rows a usage report reads (`sources`: the smallest rollup that has its grouping and filters)."""
    named = {name: params[name] for name in ("team", "project", "key", "route") if name in params}
    filters = {GROUPS[name]: value for name, value in named.items()}
    return sources(actor, {params["group_by"], *named},
                   filters | {"day__gte": params["from"], "day__lte": params["to"]})


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

STAT_SUMS = {f: Sum(f) for f in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost", *latency.FIELDS)}


def _stats(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every dashboard row has, from sums of STAT_SUMS."""
    requests, errors = int(row.get("requests") or 0), int(row.get("errors") or 0)
    counts = latency.counts_of(row)
    return {"requests": requests, "errors": errors, "error_rate": round(errors / requests, 4) if requests else 0.0,
            "prompt_tokens": int(row.get("prompt_tokens") or 0),
            "completion_tokens": int(row.get("completion_tokens") or 0), "cost": float(row.get("cost") or 0),
            "p50_ms": latency.percentile(counts, 0.5), "p95_ms": latency.percentile(counts, 0.95)}


def _every_day(by_day: dict[Any, dict[str, Any]], start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """One row per day from `start` to `end` (days without usage too), oldest first."""
    days = []
    for i in range((end - start).days + 1):
        day = start + dt.timedelta(days=i)
        days.append({"day": day.isoformat(), **_stats(by_day.get(day, {}))})
    return days


def _window(start: dt.date, end: dt.date) -> dict[str, Any]:
    if start > end:
        raise ValueError("start must not be after end")
    return {"day__gte": start, "day__lte": end}


def project_dashboard(actor: Actor, project: Project, *, start: dt.date, end: dt.date) -> dict[str, Any]:
    """A project's usage from `start` to `end` (UTC days, inclusive), as far as the actor sees it.

    Every row has `requests`, `errors`, `error_rate` (0 to 1), `prompt_tokens`, `completion_tokens`,
    `cost` (USD, float), `p50_ms` and `p95_ms` (None when there was no request; read from the latency
    histograms, see gateway/latency.py for the error bound). `days`: one row per day ("day": ISO date),
    days without usage included, oldest first; `routes`: one row per route ("route"), by cost, highest
    first; `top_keys`: up to 10 `{"key_id", "name", "requests", "cost"}` by cost; `totals`: the window."""
    window = _window(start, end) | {"project_id": project.pk}
    rows = sources(actor, {"day", "route", "project"}, window)
    by_route = grouped(rows, "route", STAT_SUMS)
    routes = sorted(({"route": route, **_stats(sums)} for route, sums in by_route.items()),
                    key=lambda r: (-r["cost"], r["route"]))
    keys = (UsageKeyDaily.objects.visible_to(actor, "view").filter(**window)
            .values("key_id").annotate(requests=Sum("requests"), cost=Sum("cost")).order_by("-cost", "key_id")[:10])
    top = list(keys)
    names = dict(VirtualKey.objects.visible_to(actor, "view").filter(pk__in=[k["key_id"] for k in top])
                 .values_list("pk", "name"))
    top_keys = [{"key_id": k["key_id"], "name": names.get(k["key_id"], f"key {k['key_id']}"),
                 "requests": int(k["requests"] or 0), "cost": float(k["cost"] or 0)} for k in top]
    return {"days": _every_day(grouped(rows, "day", STAT_SUMS), start, end), "routes": routes,
            "top_keys": top_keys, "totals": _stats(total(by_route, STAT_SUMS))}


def key_usage(actor: Actor, key: VirtualKey, *, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """A key's usage per day from `start` to `end` (UTC, inclusive; every day, oldest first), with the
    fields of `project_dashboard`'s rows; nothing when the actor may not see the key's usage."""
    rows = UsageDaily.objects.visible_to(actor, "view").filter(key_id=key.pk, **_window(start, end))
    return _every_day(grouped([rows], "day", STAT_SUMS), start, end)
