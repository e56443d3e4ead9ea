"""Evaluations: evaluators, schedules, runs and reports, datasets, benchmarks, calibration."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from evals.models import EvalReport, EvalRun, EvalScore, LangfuseConnection
from portal.models import Project
from portal.tenancy import Parent
from portal.web import charts
from portal.web.base import PROJECT, OrgPage


def _numeric_first(label: str) -> tuple[int, float, str]:
    try:
        return 0, float(label), ""
    except ValueError:
        return 1, 0.0, label


class RunPage(OrgPage):
    """An evaluation run: its scores (lowest first, linked to Langfuse), distribution and report."""

    parents = (PROJECT, Parent(EvalRun, "run_id", within="project",
                               select_related=("evaluator_version__evaluator", "schedule")))

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, project, run = self.actor, self.parent(Project), self.parent(EvalRun)
        conn = LangfuseConnection.objects.visible_to(actor, "view").filter(project=project).first()
        scores = list(EvalScore.objects.visible_to(actor, "view").filter(run=run).order_by("value", "trace_id")[:200])
        for score in scores:
            score.url = conn.trace_url(score.trace_id) if conn else ""  # type: ignore[attr-defined]
        return self.page(
            "web/run.html", project=project, run=run, scores=scores, refresh=run.status in ("queued", "running"),
            report=EvalReport.objects.visible_to(actor, "view").filter(run=run).first(),
            distribution_chart=charts.bar_chart(sorted(((str(k), float(v)) for k, v in run.distribution.items()),
                                                       key=lambda kv: _numeric_first(kv[0])),
                                                title="Scores", color="#7a5af8"),
        )
