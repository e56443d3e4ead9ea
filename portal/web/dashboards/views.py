"""Dashboards: the organization overview and the per-project dashboard (own usage and Langfuse metrics)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from evals.models import Benchmark, EvalRun, EvalSchedule, Evaluator, LangfuseConnection
from gateway import selectors
from gateway.models import ModelRoute, VirtualKey
from portal.models import Membership, Project, Team
from portal.web import charts
from portal.web.base import PROJECT, OrgPage


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


class ProjectPage(OrgPage):
    """A project: its Langfuse connection, evaluators, schedules, benchmarks and latest runs."""

    parents = (PROJECT,)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, project = self.actor, self.parent(Project)
        runs = list(EvalRun.objects.visible_to(actor, "view").filter(project=project)
                    .select_related("evaluator_version__evaluator", "schedule")[:25])
        return self.page(
            "web/project.html", project=project,
            connection=LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first(),
            evaluators=Evaluator.objects.visible_to(actor, "view").filter(project=project).prefetch_related("versions"),
            schedules=EvalSchedule.objects.visible_to(actor, "view").filter(project=project).select_related("evaluator"),
            benchmarks=Benchmark.objects.visible_to(actor, "view").filter(project=project).prefetch_related("runs"),
            runs=runs, refresh=any(r.status in ("queued", "running") for r in runs),
            score_chart=charts.bar_chart([(f"#{r.pk}", r.mean_score or 0) for r in reversed(runs)
                                         if r.mean_score is not None], title="Mean score per run", color="#7a5af8"),
        )
