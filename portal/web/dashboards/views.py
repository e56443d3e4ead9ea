"""Dashboards: the organization overview and the per-project dashboard (own usage and Langfuse metrics)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import urlencode
from kombu.exceptions import OperationalError

from evals import dashboard_metrics
from evals.models import EvalRun, LangfuseConnection
from gateway import selectors
from gateway.models import ModelRoute, VirtualKey
from portal.models import Membership, OrgRole, Project, Team
from portal.web import charts
from portal.web.base import PROJECT, OrgPage
from portal.web.dashboards.ranges import PRESETS, chosen_range

log = logging.getLogger(__name__)
ERROR_RED = "#b42318"  # errors are drawn in the stylesheet's --bad colour, not the palette's green
UNAVAILABLE = (redis.RedisError, OperationalError)  # the cache's Redis, or the broker the task goes through


class OrgOverview(OrgPage):
    """The organization at a glance: spend and requests per day, top routes and teams."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor = self.actor
        series = selectors.daily_series(actor, days=30)
        today = timezone.now().date()
        window = {"from": today - dt.timedelta(days=29), "to": today}
        by_route = selectors.usage_report(actor, {"group_by": "route", **window})
        by_team = selectors.usage_report(actor, {"group_by": "team", **window})
        return self.page(
            "web/org.html",
            teams=Team.objects.visible_to(actor, "view").prefetch_related("projects"),
            routes=ModelRoute.objects.visible_to(actor, "view").prefetch_related("deployments"),
            key_count=VirtualKey.objects.visible_to(actor, "view").count(),
            member_count=Membership.objects.visible_to(actor, "view").count(),
            spend_chart=charts.bar_chart([(d, r["cost"]) for d, r in series], unit="$", title="Spend per day"),
            requests_chart=charts.bar_chart([(d, r["requests"]) for d, r in series], title="Requests per day",
                                            color="#067647"),
            totals=by_route["totals"], by_route=by_route["results"][:8], by_team=by_team["results"][:8],
        )


def usage_charts(days: list[dict[str, Any]]) -> dict[str, Any]:
    """The project's own usage per day (gateway.selectors.project_dashboard's `days`) as charts."""
    def series(field: str, scale: float = 1.0) -> list[tuple[str, float | None]]:
        return [(d["day"], None if d[field] is None else d[field] * scale) for d in days]

    return {
        "requests_chart": charts.line_chart({"requests": series("requests"), "errors": series("errors")},
                                            title="Requests and errors per day", colors={"errors": ERROR_RED}),
        "cost_chart": charts.bar_chart([(d["day"], d["cost"]) for d in days], unit="$", title="Cost per day"),
        "tokens_chart": charts.line_chart({"prompt": series("prompt_tokens"), "completion": series("completion_tokens")},
                                          title="Tokens per day"),
        "latency_chart": charts.line_chart({"p50": series("p50_ms"), "p95": series("p95_ms")}, unit=" ms",
                                           title="Latency per day"),
        "error_rate_chart": charts.line_chart({"error rate": series("error_rate", 100.0)}, unit="%",
                                              title="Error rate per day", colors={"error rate": ERROR_RED}),
    }


def langfuse_charts(entry: dict[str, Any], connection: LangfuseConnection) -> dict[str, Any]:
    """The cached Langfuse metrics as charts; each day links to that day's traces in Langfuse."""
    days = entry.get("days") or []
    # the demo's stand-in serves the API only: no Langfuse pages to link to
    links = {} if connection.is_standin else {d["day"]: dashboard_metrics.traces_url(connection, d["day"]) for d in days}
    scores = {name: [(day, value) for day, value in points] for name, points in (entry.get("scores") or {}).items()}
    return {
        "lf_traces_chart": charts.bar_chart([(d["day"], d["traces"]) for d in days], title="Traces per day",
                                            color="#0e7490", links=links),
        "lf_latency_chart": charts.line_chart({"p50": [(d["day"], d["p50_ms"]) for d in days],
                                               "p95": [(d["day"], d["p95_ms"]) for d in days]},
                                              unit=" ms", title="Trace latency per day", links=links),
        "lf_cost_chart": charts.bar_chart([(d["day"], d["cost"]) for d in days], unit="$",
                                          title="Langfuse cost per day", color="#b54708", links=links),
        "lf_scores_chart": charts.line_chart(scores, title="Mean score per day") if scores else None,
        "lf_totals": {"traces": sum(d["traces"] for d in days), "cost": sum(d["cost"] for d in days),
                      "tokens": sum(d["tokens"] for d in days)},
    }


def langfuse_section(project: Project, connection: LangfuseConnection, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The cached metrics of the window (a refresh queued when they are missing or stale)."""
    entry = dashboard_metrics.cached(project.pk, start, end)
    queued = dashboard_metrics.is_queued(project.pk, start, end)
    if dashboard_metrics.is_stale(entry):
        queued = dashboard_metrics.request_refresh(project.pk, start, end) or queued
    return {"entry": entry, "queued": queued,
            "scores_url": "" if connection.is_standin else dashboard_metrics.scores_url(connection),
            "fetched_at": _moment(entry, "fetched_at"), "error_at": _moment(entry, "error_at"),
            **(langfuse_charts(entry, connection) if entry and entry.get("days") else {})}


class ProjectPage(OrgPage):
    """A project's dashboard: its usage through the gateway per day and per route, its top keys,
    and its Langfuse metrics (read from the cache the task fills; the page never calls Langfuse).
    POST asks for a refresh of the Langfuse metrics (members and up)."""

    parents = (PROJECT,)
    write_role = OrgRole.MEMBER

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, project = self.actor, self.parent(Project)
        today = timezone.now().date()
        form, start, end = chosen_range(request.GET, today)
        usage = selectors.project_dashboard(actor, project, start=start, end=end)
        connection = LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first()
        langfuse: dict[str, Any] = {}
        if connection is not None and connection.enabled:
            try:
                langfuse = langfuse_section(project, connection, start, end)
            except UNAVAILABLE:
                log.warning("the Langfuse metrics cache is unavailable", exc_info=True)
                langfuse = {"unavailable": True}
        runs = list(EvalRun.objects.visible_to(actor, "view").filter(project=project)
                    .select_related("evaluator_version__evaluator", "schedule")[:5])
        return self.page(
            "web/project.html", http_status=400 if form.errors else 200, project=project, form=form,
            start=start, end=end, presets=PRESETS, chosen="" if form.errors else form.cleaned_data.get("range"),
            start_value=str(request.GET.get("start") or start)[:40], end_value=str(request.GET.get("end") or end)[:40],
            usage=usage, top_keys=[{**k, "url": _key_url(self.organization.slug, k["key_id"])}
                                   for k in usage["top_keys"]],
            connection=connection, langfuse=langfuse, runs=runs,
            may_refresh=actor.at_least(OrgRole.MEMBER), **usage_charts(usage["days"]),
        )

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        project = self.parent(Project)
        today = timezone.now().date()
        form, start, end = chosen_range(request.POST, today)
        connection = LangfuseConnection.objects.visible_to(self.actor, "view").filter(project=project,
                                                                                       enabled=True).first()
        if connection is None:
            messages.error(request, "This project is not connected to Langfuse.")
        elif form.errors:
            messages.error(request, "Choose a valid time range first.")
        else:
            try:
                queued = dashboard_metrics.request_refresh(project.pk, start, end)
            except UNAVAILABLE:
                log.warning("could not queue a Langfuse metrics refresh", exc_info=True)
                messages.error(request, "The refresh could not be queued right now; try again in a minute.")
            else:
                if queued:
                    messages.success(request, "Refresh queued: the Langfuse metrics update in a moment.")
                else:
                    messages.info(request, "A refresh is already queued.")
        query = {"range": form.cleaned_data.get("range", "")} if not form.errors else {}
        if query.get("range") == "custom":
            query.update(start=start.isoformat(), end=end.isoformat())
        url = reverse("web:project", args=[self.organization.slug, project.pk])
        return HttpResponseRedirect(f"{url}?{urlencode(query)}" if query else url)


def _moment(entry: dict[str, Any] | None, field: str) -> dt.datetime | None:
    value = (entry or {}).get(field)
    return dt.datetime.fromisoformat(value) if value else None


def _key_url(org_slug: str, key_id: int) -> str:
    try:  # the per-key page (B2's area) once it exists
        return reverse("web:key", args=[org_slug, key_id])
    except NoReverseMatch:
        return ""
