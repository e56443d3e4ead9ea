"""Evaluation runs: the list and the form that starts one, a run's page (a progress bar that moves while
it works, fed by a small JSON endpoint; scores lowest first, linked to Langfuse; the report)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect

from evals.api.serializers import ReportRequestSerializer, RunRequestSerializer, RunSerializer
from evals.models import EvalReport, EvalRun, EvalScore, Evaluator
from evals.services import evaluators as services
from evals.services import reports
from gateway.models import ModelRoute
from gateway.services.keys.rules import usable_routes
from portal.exceptions import Conflict
from portal.tenancy import Parent
from portal.web import charts
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, flash_errors, optional

RUN = Parent(EvalRun, "run_id", within="project", select_related=("evaluator_version__evaluator", "schedule"))


def _numeric_first(label: str) -> tuple[int, float, str]:
    try:
        return 0, float(label), ""
    except ValueError:
        return 1, 0.0, label


def evaluation_runs(view: ProjectPage) -> Any:
    """The project's evaluation runs (not calibrations: those have no window)."""
    return (EvalRun.objects.visible_to(view.actor, "view").filter(project=view.project, window_end__isnull=False)
            .select_related("evaluator_version__evaluator", "schedule").order_by("-created_at", "-pk"))


class RunsPage(ProjectPage):
    """The project's runs, newest first, and the form that starts one over a window of traces."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form={}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data = optional(request.POST, "evaluator", "window_start", "window_end")
        serializer = RunRequestSerializer(data=data, context=self.parent_context())
        try:
            self.actor.require_team_manager(self.project.team_id)
            if not serializer.is_valid():
                raise ValidationError(drf_errors(serializer.errors))
            body = serializer.validated_data
            if body.get("window_end") and body["window_end"] <= body["window_start"]:
                raise ValidationError({"window_end": ["Must be after the start."]})
            run = services.eval_run_create(project=self.project, evaluator=body["evaluator"],
                                           window_start=body["window_start"], window_end=body.get("window_end"))
            services.enqueue(run)
        except (ValidationError, PermissionDenied, Conflict) as exc:
            return self.listing(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Run #{run.pk} queued.")
        return redirect("web:run", org_slug=self.organization.slug, project_id=self.project.pk, run_id=run.pk)

    def listing(self, *, form: dict[str, Any], errors: dict[str, list[str]]) -> HttpResponse:
        page = Paginator(evaluation_runs(self), 50).get_page(self.request.GET.get("page"))
        evaluators = Evaluator.objects.visible_to(self.actor, "view").filter(project=self.project, archived=False)
        return self.page("web/evaluations/runs.html", http_status=400 if errors else 200, page=page,
                         evaluators=evaluators.order_by("name"), form=form, errors=errors)


class RunPage(ProjectPage):
    """An evaluation run: progress while it works, its scores (lowest first, linked to Langfuse),
    the distribution and the report."""

    parents = (PROJECT, RUN)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        actor, run = self.actor, self.parent(EvalRun)
        if run.window_end is None:  # a calibration (of dataset items, not traces): its own page
            return redirect("web:calibration-report", org_slug=self.organization.slug, project_id=self.project.pk,
                            run_id=run.pk)
        conn = self.connection()
        scores = list(EvalScore.objects.visible_to(actor, "view").filter(run=run).order_by("value", "trace_id")[:200])
        for score in scores:
            score.url = conn.trace_url(score.trace_id) if conn else ""  # type: ignore[attr-defined]
        points = sorted(((str(k), float(v)) for k, v in run.distribution.items()), key=lambda kv: _numeric_first(kv[0]))
        routes = ModelRoute.objects.visible_to(actor, "view").filter(
            is_active=True, pk__in=usable_routes(self.project.team_id, self.project.organization_id)).order_by("name")
        report = EvalReport.objects.visible_to(actor, "view").filter(run=run).select_related("route").first()
        groups = [{**g, "traces": [(t, conn.trace_url(t) if conn else "") for t in g.get("trace_ids") or []]}
                  for g in (report.groups if report else [])]
        # the report's summary: its markdown before the groups' headings (`reports.render_markdown`)
        summary = report.content.split("### ", 1)[0].strip() if report and groups else ""
        return self.page(
            "web/run.html", run=run, scores=scores, working=run.status in ("queued", "running"),
            progress=RunSerializer(run).data, routes=routes, report=report, report_groups=groups,
            report_summary=summary,
            distribution_chart=charts.bar_chart(points, title="Scores", color="#7a5af8") if points else "",
        )


class RunProgress(ProjectPage):
    """The run's progress as JSON (the API's run body), polled by the run page."""

    parents = (PROJECT, RUN)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        response = JsonResponse(RunSerializer(self.parent(EvalRun)).data)
        response["Cache-Control"] = "no-store"
        return response


class RunReport(ProjectPage):
    """Write (or write again) the run's report through a route (POST)."""

    parents = (PROJECT, RUN)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        run = self.parent(EvalRun)
        body = ReportRequestSerializer(data=optional(request.POST, "route"), context=self.parent_context())
        try:
            self.actor.require_team_manager(self.project.team_id)
            if not body.is_valid():
                raise ValidationError(drf_errors(body.errors))
            reports.report_create(run=run, route=body.validated_data["route"])
            messages.success(request, "The report is being written; it shows here when it is done.")
        except (ValidationError, PermissionDenied) as exc:
            flash_errors(request, errors_of(exc))
        return redirect("web:run", org_slug=self.organization.slug, project_id=self.project.pk, run_id=run.pk)
