"""The evaluation agent's pages: a project's investigations and the form that starts one, a report
(progress while it works, fed by a small JSON endpoint; the summary, the findings with their evidence
linked to Langfuse and to the steps, the steps, the conversation and its question form), and the
agent's schedules. Writes go through the agent's services (evals/agent/services.py, schedules.py,
datasets.py) after the API's serializers checked the forms, as the other pages do."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from evals.agent import services
from evals.agent.datasets import finding_dataset
from evals.agent.models import AgentFinding, AgentMessage, AgentReport, AgentSchedule, AgentStep
from evals.agent.schedules import schedule_delete, schedule_run_now, schedule_save
from evals.api.agent_serializers import (
    AgentFindingDatasetRequestSerializer,
    AgentMessageRequestSerializer,
    AgentReportRequestSerializer,
    AgentScheduleSerializer,
    trace_url,
)
from evals.langfuse_client import LangfuseError
from evals.models import LangfuseConnection
from gateway.models import ModelRoute
from gateway.services.keys.rules import usable_routes
from portal.exceptions import Conflict
from portal.tenancy import Parent
from portal.web import charts
from portal.web.base import PROJECT
from portal.web.evaluations.common import ProjectPage, drf_errors, errors_of, flash_errors, optional, text

REPORT = Parent(AgentReport, "report_id", within="project", select_related=("route", "schedule", "created_by"))
SCHEDULE = Parent(AgentSchedule, "schedule_id", within="project", select_related=("route",))
WORKING = ("queued", "running")
BOUNDS = ("max_steps", "max_tokens", "max_seconds", "max_spend")
TRACES_SHOWN = 12  # a step's traces listed under it (the digest holds them all)
Errors = dict[str, list[str]]


def routes_of(view: ProjectPage) -> Any:
    """The active routes the project's team may use: the only ones the forms offer."""
    project = view.project
    return ModelRoute.objects.visible_to(view.actor, "view").filter(
        is_active=True, pk__in=usable_routes(project.team_id, project.organization_id)).order_by("name")


def defaults_of(model: type[models.Model], fields: tuple[str, ...]) -> dict[str, str]:
    """The fields' model defaults, as a form shows them."""
    return {f: str(model._meta.get_field(f).get_default()) for f in fields}  # type: ignore[union-attr]


def checked(post: QueryDict, name: str) -> bool:
    return post.get(name) in ("on", "true", "1")


def trace_link(conn: LangfuseConnection | None, trace_id: Any) -> tuple[str, str]:
    """A trace id and its Langfuse page ("" without one), as the API links it (agent_serializers.trace_url)."""
    tid = str(trace_id)
    return tid, trace_url(conn, tid) or ""


def decorate(step: AgentStep, conn: LangfuseConnection | None) -> None:
    """What the step's template shows: its arguments as JSON text, its traces linked to Langfuse."""
    ids = step.trace_ids if isinstance(step.trace_ids, list) else []
    step.traces = [trace_link(conn, t) for t in ids[:TRACES_SHOWN]]  # type: ignore[attr-defined]
    step.more_traces = max(0, len(ids) - TRACES_SHOWN)  # type: ignore[attr-defined]
    step.llm_url = trace_link(conn, step.llm_trace_id)[1] if step.llm_trace_id else ""  # type: ignore[attr-defined]
    args = step.arguments
    if step.kind == "model":  # the tool calls the model asked for: [{id, name, arguments (its JSON text)}]
        asked = args if isinstance(args, list) else []
        step.asked = [(str(c.get("name", ""))[:100], str(c.get("arguments", ""))[:300])  # type: ignore[attr-defined]
                      for c in asked if isinstance(c, dict)]
        args = None
    step.args_text = "" if args is None else (  # type: ignore[attr-defined]
        args if isinstance(args, str) else json.dumps(args, indent=1, ensure_ascii=False, sort_keys=True))[:4000]


def step_pct(report: AgentReport) -> int:
    return min(100, round(100 * report.steps_taken / report.max_steps)) if report.max_steps else 0


def elapsed_seconds(report: AgentReport) -> int | None:
    if report.started_at is None:
        return None
    return int(((report.finished_at or timezone.now()) - report.started_at).total_seconds())


def progress_of(report: AgentReport) -> dict[str, Any]:
    """What the report page shows while it works (and polls as JSON)."""
    answering = report.messages.filter(role="assistant", status__in=WORKING).exists()
    return {"id": report.pk, "status": report.status, "steps_taken": report.steps_taken,
            "max_steps": report.max_steps, "tokens_used": report.tokens_used, "max_tokens": report.max_tokens,
            "cost": f"{report.cost:.4f}", "max_spend": f"{report.max_spend:.2f}",
            "elapsed_seconds": elapsed_seconds(report), "max_seconds": report.max_seconds,
            "findings": report.findings.count(), "findings_dropped": report.findings_dropped,
            "answering": answering, "working": report.status in WORKING or answering}


class AgentReportsPage(ProjectPage):
    """The project's investigations, newest first, and (for the team's managers) the form that starts one."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form={}, errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        self.actor.require_team_manager(self.project.team_id)  # a too-low role: 403, whatever the form holds
        body = AgentReportRequestSerializer(data=optional(request.POST, "route", "focus", "window_start",
                                                          "window_end", *BOUNDS), context=self.parent_context())
        try:
            if not body.is_valid():
                raise ValidationError(drf_errors(body.errors))
            report = services.report_create(actor=self.actor, project=self.project, **body.validated_data)
        except (ValidationError, Conflict) as exc:
            return self.listing(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Investigation #{report.pk} queued.")
        return redirect("web:agent-report", org_slug=self.organization.slug, project_id=self.project.pk,
                        report_id=report.pk)

    def listing(self, *, form: dict[str, Any], errors: Errors) -> HttpResponse:
        rows = (AgentReport.objects.visible_to(self.actor, "view").filter(project=self.project)
                .select_related("route", "schedule", "created_by")
                .annotate(n_findings=models.Count("findings")).order_by("-created_at", "-pk"))
        defaults = defaults_of(AgentReport, BOUNDS)
        return self.page("web/evaluations/agent.html", http_status=400 if errors else 200,
                         page=Paginator(rows, 50).get_page(self.request.GET.get("page")),
                         routes=routes_of(self), form={**defaults, **form}, errors=errors, working=WORKING)


class AgentReportPage(ProjectPage):
    """One investigation: its progress, summary, findings and evidence, steps and conversation."""

    parents = (PROJECT, REPORT)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.detail(question="", errors={})

    def detail(self, *, question: str, errors: Errors) -> HttpResponse:
        report, conn = self.parent(AgentReport), self.connection()
        steps = list(AgentStep.objects.visible_to(self.actor, "view").filter(report=report)
                     .defer("result").order_by("index"))
        for step in steps:
            decorate(step, conn)
        names = {s.index: s.tool_name for s in steps if s.kind == "tool"}
        findings = list(AgentFinding.objects.visible_to(self.actor, "view").filter(report=report)
                        .select_related("dataset").order_by("index"))
        for f in findings:
            f.traces = [trace_link(conn, t) for t in f.trace_ids or []]  # type: ignore[attr-defined]
            f.step_refs = [(i, names[i]) for i in f.steps or [] if i in names]  # type: ignore[attr-defined]
            f.share_pct = "" if f.share is None else f"{100 * f.share:.1f}%"  # type: ignore[attr-defined]
        by_message: dict[int, list[AgentStep]] = {}
        for step in steps:
            if step.message_id is not None:
                by_message.setdefault(step.message_id, []).append(step)
        conversation = list(AgentMessage.objects.visible_to(self.actor, "view").filter(report=report)
                            .select_related("created_by").order_by("created_at", "pk"))
        for m in conversation:
            m.answer_steps = by_message.get(m.pk, [])  # type: ignore[attr-defined]
            m.cited = [(*trace_link(conn, e.get("trace_id", "")),  # type: ignore[attr-defined]
                        [i for i in e.get("steps") or [] if isinstance(i, int)])
                       for e in m.evidence or [] if isinstance(e, dict)]
        progress = progress_of(report)
        chart = charts.bar_chart([(f.title[:40], float(f.count)) for f in findings],
                                 title="Traces per finding", color="#b42318") if len(findings) > 1 else ""
        return self.page("web/evaluations/agent_report.html", http_status=400 if errors else 200, report=report,
                         progress=progress, working=progress["working"], findings=findings, findings_chart=chart,
                         steps=[s for s in steps if s.message_id is None], conversation=conversation,
                         dropped=[d for d in report.dropped or [] if isinstance(d, dict)],
                         question=question, errors=errors,
                         pct=step_pct(report) if progress["working"] else 100)


class AgentReportProgress(ProjectPage):
    """The report's progress as JSON, polled by its page while it (or an answer) works."""

    parents = (PROJECT, REPORT)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        response = JsonResponse(progress_of(self.parent(AgentReport)))
        response["Cache-Control"] = "no-store"
        return response


class AgentQuestion(AgentReportPage):
    """Ask a follow-up question about the report (POST): the agent answers in the conversation."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        raise Http404

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        report = self.parent(AgentReport)
        self.actor.require_team_manager(self.project.team_id)
        body = AgentMessageRequestSerializer(data={"content": text(request.POST, "content").replace("\r\n", "\n")})
        try:
            if not body.is_valid():
                raise ValidationError(drf_errors(body.errors))
            services.message_create(actor=self.actor, report=report, content=body.validated_data["content"])
        except (ValidationError, Conflict) as exc:
            return self.detail(question=text(request.POST, "content"), errors=errors_of(exc))
        messages.success(request, "Question sent: the answer shows here when the agent is done.")
        return redirect(reverse("web:agent-report", kwargs={"org_slug": self.organization.slug, "project_id":
                                                           self.project.pk, "report_id": report.pk}) + "#conversation")


class AgentFindingDataset(ProjectPage):
    """Turn a finding's traces into a dataset (POST), then to that dataset."""

    parents = (PROJECT, REPORT)

    def post(self, request: HttpRequest, *, index: int, **kwargs: Any) -> HttpResponse:
        report = self.parent(AgentReport)
        finding = AgentFinding.objects.visible_to(self.actor, "change").filter(report=report, index=index).first()
        if finding is None:
            raise Http404
        self.actor.require_team_manager(self.project.team_id)
        body = AgentFindingDatasetRequestSerializer(data=optional(request.POST, "name"))
        try:
            if not body.is_valid():
                raise ValidationError(drf_errors(body.errors))
            dataset = finding_dataset(actor=self.actor, finding=finding, name=body.validated_data.get("name"))
        except (ValidationError, Conflict, LangfuseError) as exc:
            flash_errors(request, {"non_field_errors": [f"Langfuse: {str(exc)[:300]} Nothing was changed; try again."]}
                         if isinstance(exc, LangfuseError) else errors_of(exc))
            return redirect(reverse("web:agent-report", kwargs={"org_slug": self.organization.slug, "project_id":
                                                               self.project.pk, "report_id": report.pk})
                            + f"#finding-{finding.index}")
        messages.success(request, f"Dataset '{dataset.name}' holds the finding's traces, their outputs in "
                                  "metadata.output: write the expected outputs (these outputs went wrong), then "
                                  "benchmark the fix on it.")
        return redirect("web:dataset", org_slug=self.organization.slug, project_id=self.project.pk,
                        dataset_id=dataset.pk)


SCHEDULE_FIELDS = ("name", "cron", "focus", "lookback_hours", "alert_growth", *BOUNDS)


def schedule_body(view: ProjectPage, post: QueryDict, schedule: AgentSchedule | None = None) -> dict[str, Any]:
    """The schedule form, checked by the API's serializer, as the service's data (ValidationError if not)."""
    data: dict[str, Any] = {**optional(post, "name", "route", "cron", "focus", "lookback_hours", *BOUNDS),
                            "enabled": checked(post, "enabled"), "alert_on_new": checked(post, "alert_on_new"),
                            "alert_growth": text(post, "alert_growth").strip() or None}
    data.setdefault("focus", "")
    serializer = AgentScheduleSerializer(schedule, data=data, partial=schedule is not None,
                                         context=view.parent_context())
    if not serializer.is_valid():
        raise ValidationError(drf_errors(serializer.errors))
    return dict(serializer.validated_data)


def schedule_initial(schedule: AgentSchedule) -> dict[str, Any]:
    form = {f: "" if getattr(schedule, f) is None else str(getattr(schedule, f)) for f in SCHEDULE_FIELDS}
    return form | {"route": schedule.route.name,
                   "enabled": "on" if schedule.enabled else "", "alert_on_new": "on" if schedule.alert_on_new else ""}


def schedule_defaults() -> dict[str, Any]:
    fields = ("cron", "lookback_hours", "alert_growth", *BOUNDS)
    return defaults_of(AgentSchedule, fields) | {
        "enabled": "on", "alert_on_new": "on"}


class AgentSchedulesPage(ProjectPage):
    """The agent's schedules of the project and the form that creates one."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.listing(form=schedule_defaults(), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        self.actor.require_team_manager(self.project.team_id)
        try:
            schedule = schedule_save(actor=self.actor, project=self.project, data=schedule_body(self, request.POST))
        except (ValidationError, Conflict) as exc:
            return self.listing(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Schedule '{schedule.name}' created.")
        return redirect("web:agent-schedules", org_slug=self.organization.slug, project_id=self.project.pk)

    def listing(self, *, form: dict[str, Any], errors: Errors) -> HttpResponse:
        schedules = (AgentSchedule.objects.visible_to(self.actor, "view").filter(project=self.project)
                     .select_related("route", "periodic_task").order_by("name"))
        return self.page("web/evaluations/agent_schedules.html", http_status=400 if errors else 200,
                         schedules=schedules, routes=routes_of(self), form=form, errors=errors)


class AgentSchedulePage(ProjectPage):
    """One of the agent's schedules: its settings (edit) and its latest reports."""

    parents = (PROJECT, SCHEDULE)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.detail(form=schedule_initial(self.parent(AgentSchedule)), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        schedule = self.parent(AgentSchedule)
        self.actor.require_team_manager(self.project.team_id)
        try:
            schedule_save(actor=self.actor, project=self.project, schedule=schedule,
                          data=schedule_body(self, request.POST, schedule))
        except (ValidationError, Conflict) as exc:
            return self.detail(form=request.POST.dict(), errors=errors_of(exc))
        messages.success(request, f"Schedule '{schedule.name}' saved.")
        return redirect("web:agent-schedule", org_slug=self.organization.slug, project_id=self.project.pk,
                        schedule_id=schedule.pk)

    def detail(self, *, form: dict[str, Any], errors: Errors) -> HttpResponse:
        schedule = self.parent(AgentSchedule)
        reports = (AgentReport.objects.visible_to(self.actor, "view").filter(schedule=schedule)
                   .annotate(n_findings=models.Count("findings")).order_by("-created_at", "-pk")[:20])
        return self.page("web/evaluations/agent_schedule.html", http_status=400 if errors else 200,
                         schedule=schedule, reports=reports, routes=routes_of(self), form=form, errors=errors)


class AgentScheduleAction(ProjectPage):
    """Run a schedule now or delete it (POST)."""

    parents = (PROJECT, Parent(AgentSchedule, "schedule_id", within="project", select_related=("route",),
                               action="change"))

    def post(self, request: HttpRequest, *, verb: str, **kwargs: Any) -> HttpResponse:
        schedule = self.parent(AgentSchedule)
        self.actor.require_team_manager(self.project.team_id)
        try:
            if verb == "delete":
                schedule_delete(actor=self.actor, schedule=schedule)
                messages.success(request, f"Schedule '{schedule.name}' deleted; its reports stay.")
            elif verb == "run":
                report = schedule_run_now(actor=self.actor, schedule=schedule)
                return redirect("web:agent-report", org_slug=self.organization.slug, project_id=self.project.pk,
                                report_id=report.pk)
            else:
                raise Http404
        except (ValidationError, Conflict) as exc:
            flash_errors(request, errors_of(exc))
            return redirect("web:agent-schedule", org_slug=self.organization.slug, project_id=self.project.pk,
                            schedule_id=schedule.pk)
        return redirect("web:agent-schedules", org_slug=self.organization.slug, project_id=self.project.pk)

